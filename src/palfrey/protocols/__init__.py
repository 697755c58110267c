"""Protocols a connection can switch to after the compiled HTTP/1.1 core hands it over."""
