"""styxgrid's security: its own CA (ca), join tokens (tokens), TLS contexts and
handshakes (tls), the identity folders clients keep (identity), and enrolment of
a newcomer by token (enrol)."""
