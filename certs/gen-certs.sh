#!/usr/bin/env bash
# Makes a CA and a serving certificate for the virt-sizer webhook Service
# (<service>.<namespace>.svc and <service>.<namespace>.svc.cluster.local),
# writes them with a Secret manifest and a kustomization into the output
# directory (default certs/out/, git-ignored), and prints the caBundle
# (base64 of the CA bundle PEM) on standard output. Progress goes to
# standard error, so `CA_BUNDLE=$(certs/gen-certs.sh)` works.
#
# The CA is reused when the output directory already has one, so running the
# script again only renews the serving certificate and the caBundle does not
# change. See certs/README.md for CA rotation (--new-ca, --drop-previous-ca).
#
# Needs: bash, openssl (1.1.1 or 3.x).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: certs/gen-certs.sh [options]

  --service NAME         Service name                [virt-sizer]
  --namespace NAME       Service namespace           [virt-sizer]
  --secret-name NAME     Secret to write             [virt-sizer-tls]
  --out DIR              output directory            [certs/out next to this script]
  --days N               serving certificate validity in days    [365]
  --ca-days N            CA validity in days (new CAs only)      [3650]
  --new-ca               start a new CA; the old one stays in the bundle
                         (ca-previous.crt) until --drop-previous-ca
  --drop-previous-ca     remove the previous CA from the bundle
  -h, --help             this text

Writes into DIR: ca.crt ca.key [ca-previous.crt] ca-bundle.crt tls.crt tls.key
secret.yaml kustomization.yaml (the Secret, for manifests/overlays/certs-script).
Prints the caBundle (base64, one line) on standard output.
EOF
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
service=virt-sizer
namespace=virt-sizer
secret_name=virt-sizer-tls
out="$script_dir/out"
days=365
ca_days=3650
new_ca=false
drop_previous=false

while [ $# -gt 0 ]; do
    case "$1" in
        --service) service=${2:?--service needs a value}; shift 2 ;;
        --namespace) namespace=${2:?--namespace needs a value}; shift 2 ;;
        --secret-name) secret_name=${2:?--secret-name needs a value}; shift 2 ;;
        --out) out=${2:?--out needs a value}; shift 2 ;;
        --days) days=${2:?--days needs a value}; shift 2 ;;
        --ca-days) ca_days=${2:?--ca-days needs a value}; shift 2 ;;
        --new-ca) new_ca=true; shift ;;
        --drop-previous-ca) drop_previous=true; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gen-certs.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

case "$days$ca_days" in
    *[!0-9]*) echo "gen-certs.sh: --days and --ca-days take whole days" >&2; exit 2 ;;
esac
command -v openssl >/dev/null || { echo "gen-certs.sh: openssl not found" >&2; exit 2; }

say() { echo "gen-certs.sh: $*" >&2; }

dns_svc="$service.$namespace.svc"
dns_full="$dns_svc.cluster.local"

mkdir -p "$out"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- CA -------------------------------------------------------------------
if $new_ca && [ -f "$out/ca.crt" ]; then
    mv "$out/ca.crt" "$out/ca-previous.crt"
    rm -f "$out/ca.key"
    say "moved the current CA to ca-previous.crt (still trusted until --drop-previous-ca)"
fi
if $drop_previous && [ -f "$out/ca-previous.crt" ]; then
    rm -f "$out/ca-previous.crt"
    say "dropped the previous CA from the bundle"
fi

if [ -f "$out/ca.crt" ] && [ -f "$out/ca.key" ]; then
    say "reusing the CA in $out/ca.crt"
    if ! openssl x509 -in "$out/ca.crt" -noout -checkend $((days * 86400)) >/dev/null; then
        say "WARNING: the CA expires before the new serving certificate; consider --new-ca"
    fi
else
    cat >"$work/ca.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $service-ca
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/ca.key" 2>/dev/null
    openssl req -x509 -new -sha256 -key "$out/ca.key" -days "$ca_days" \
        -config "$work/ca.cnf" -extensions v3_ca -out "$out/ca.crt"
    say "made a new CA ($service-ca, $ca_days days)"
fi

# --- serving certificate --------------------------------------------------
cat >"$work/leaf.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $dns_svc
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:$dns_svc, DNS:$dns_full
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/tls.key" 2>/dev/null
openssl req -new -sha256 -key "$work/tls.key" -config "$work/leaf.cnf" -out "$work/tls.csr"
openssl x509 -req -sha256 -in "$work/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" \
    -extfile "$work/leaf.cnf" -extensions v3_leaf -out "$work/tls.crt" 2>/dev/null
openssl verify -CAfile "$out/ca.crt" -purpose sslserver "$work/tls.crt" >/dev/null
mv "$work/tls.key" "$out/tls.key"
mv "$work/tls.crt" "$out/tls.crt"
say "made the serving certificate for $dns_svc, $dns_full ($days days)"

# --- bundle, Secret, kustomization -----------------------------------------
cat "$out/ca.crt" >"$out/ca-bundle.crt"
if [ -f "$out/ca-previous.crt" ]; then
    cat "$out/ca-previous.crt" >>"$out/ca-bundle.crt"
fi

b64() { openssl base64 -A <"$1"; }
ca_bundle=$(b64 "$out/ca-bundle.crt")

cat >"$out/secret.yaml" <<EOF
# Written by certs/gen-certs.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ). Do not commit.
apiVersion: v1
kind: Secret
metadata:
  name: $secret_name
  namespace: $namespace
  labels:
    app.kubernetes.io/name: virt-sizer
    app.kubernetes.io/part-of: virt-sizer
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$out/tls.crt")
  tls.key: $(b64 "$out/tls.key")
  ca.crt: $ca_bundle
EOF
cat >"$out/kustomization.yaml" <<'EOF'
# Written by certs/gen-certs.sh; used by manifests/overlays/certs-script.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - secret.yaml
EOF
chmod 0644 "$out/ca.crt" "$out/ca-bundle.crt" "$out/tls.crt" "$out/kustomization.yaml"
say "wrote $out/secret.yaml (Secret $namespace/$secret_name) and $out/kustomization.yaml"
say "caBundle (standard output):"
printf '%s\n' "$ca_bundle"
