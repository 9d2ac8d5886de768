#!/usr/bin/env bash
# Test PKI for the tls_monitor target: a CA, a server certificate for 127.0.0.1 and qemu-test,
# a client certificate, and an unrelated CA. The extensions satisfy Python 3.13's strict checks.
set -euo pipefail
cd "$1"
ca_ext=(-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -addext "subjectKeyIdentifier=hash")
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca-cert.pem -days 2 -subj "/CN=qmpb test CA" "${ca_ext[@]}"
openssl req -x509 -newkey rsa:2048 -nodes -keyout other-key.pem -out other-ca.pem -days 2 -subj "/CN=other CA" "${ca_ext[@]}"
leaf="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash"
printf '%s\nsubjectAltName=DNS:qemu-test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "${leaf}" > server.ext
printf '%s\nextendedKeyUsage=clientAuth\n' "${leaf}" > client.ext
openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr -subj "/CN=qemu-test"
openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -out server-cert.pem -days 2 -extfile server.ext
openssl req -newkey rsa:2048 -nodes -keyout client-key.pem -out client.csr -subj "/CN=qmpb-client"
openssl x509 -req -in client.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -out client-cert.pem -days 2 -extfile client.ext
mkdir qemu
cp ca-cert.pem server-cert.pem server-key.pem qemu/
