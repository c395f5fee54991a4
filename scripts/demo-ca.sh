#!/usr/bin/env bash
# Generates a throwaway local PKI for the TLS demo with the openssl CLI, into DIR
# (default .demo/tls; nothing here is committed):
#
#   ca.pem / ca.key                    demo CA (signs everything below)
#   gateway.pem / gateway.key          the gateway's HTTPS certificate:
#                                      localhost, gateway.medgate.test, 127.0.0.1
#   services.pem / services.key        the role services' certificate: patient, doctor,
#                                      lab, insurance .medgate.test, 127.0.0.1
#   gateway-client.pem / .key          the client certificate the gateway presents to
#                                      the role services (mutual TLS)
#   foreign-ca.pem / foreign-client.*  another CA and a client certificate it signed,
#                                      which the role services must refuse
#
# Usage: scripts/demo-ca.sh [DIR] [--force]   (existing files are kept unless --force
# or a certificate expires within a day)
set -euo pipefail
DIR=.demo/tls
FORCE=0
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) DIR="$a" ;;
  esac
done
command -v openssl >/dev/null || { echo "demo-ca: openssl is required (scripts/deps.sh installs it)" >&2; exit 1; }
mkdir -p "$DIR"
chmod 700 "$DIR"
# Kept while every certificate is valid for another day; made anew once one is not
# (they live 30 days, and the gateway refuses to start with an expired one).
fresh() {
  local f
  for f in ca gateway services gateway-client foreign-ca foreign-client; do
    openssl x509 -checkend 86400 -noout -in "$DIR/$f.pem" >/dev/null 2>&1 || return 1
  done
}
if [[ $FORCE -eq 0 ]] && fresh; then
  echo "demo-ca: $DIR already holds a demo PKI (--force to regenerate)"
  exit 0
fi
cd "$DIR"
umask 077
DAYS=${DEMO_CA_DAYS:-30}

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days "$DAYS" -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.pem" 2>/dev/null
}

leaf() { # name ca subject usage san
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$3" -out "$1.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n%s\n' \
    "$4" "${5:+subjectAltName=$5}" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -sha256 -days "$DAYS" \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

ca ca "Medgate demo CA"
leaf gateway ca "gateway.medgate.test" serverAuth "DNS:localhost,DNS:gateway.medgate.test,IP:127.0.0.1"
leaf services ca "role services" serverAuth \
  "DNS:patient.medgate.test,DNS:doctor.medgate.test,DNS:lab.medgate.test,DNS:insurance.medgate.test,IP:127.0.0.1"
leaf gateway-client ca "medgate gateway" clientAuth ""
ca foreign-ca "Some other CA"
leaf foreign-client foreign-ca "medgate gateway" clientAuth ""
rm -f ./*.srl
chmod 644 ./*.pem
echo "demo-ca: wrote a demo PKI to $DIR (valid $DAYS days; throwaway keys, never for production)"
