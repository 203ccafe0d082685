#!/bin/sh
# Writes the TSIG key from the environment, then runs named as primary or secondary.
set -eu
role="$1"
mkdir -p /var/cache/bind /etc/bind/cutover
cat > /etc/bind/cutover/key.conf <<KEY
key "cutover-lab" { algorithm hmac-sha256; secret "${CUTOVER_TSIG_SECRET}"; };
KEY
cp "/cutover/bind/named.${role}.conf" /etc/bind/named.conf
if [ "$role" = primary ]; then cp /cutover/bind/bank.internal.db /var/cache/bind/bank.internal.db; fi
exec named -g -c /etc/bind/named.conf -u bind
