"""Serve main:app from a Python program: the keywords are the command line's options."""

import os

import palfrey

if __name__ == "__main__":
    palfrey.run("main:app", host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
