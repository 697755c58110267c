"""TLS 1.3 only: start from the context the ssl_* options describe, then tighten it."""

import ssl

import palfrey


def tls13_only(config, default_factory):
    context = default_factory()  # certfile, keyfile, ca_certs, cert_reqs, ciphers applied
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


if __name__ == "__main__":
    palfrey.run(
        "main:app",
        host="0.0.0.0",
        port=8443,
        ssl_certfile="cert.pem",
        ssl_keyfile="key.pem",
        ssl_context_factory=tls13_only,
    )
