#!/usr/bin/env bash
# Starts Debian's clickhouse-server (18.16) on loopback with its data in DIR, for reference tests
# and benchmarks. Prints the HTTP port once the server answers. Usage: start.sh DIR [HTTP_PORT]
set -euo pipefail
dir=$(realpath -m "$1")
http_port=${2:-18123}
tcp_port=$((http_port + 1))
mkdir -p "$dir/data" "$dir/tmp" "$dir/log"
cat > "$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>$dir/log/server.log</log><errorlog>$dir/log/error.log</errorlog></logger>
    <http_port>$http_port</http_port>
    <tcp_port>$tcp_port</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>536870912</mark_cache_size>
</yandex>
XML
cat > "$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles><default><max_threads>2</max_threads></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
XML
clickhouse-server --config-file="$dir/config.xml" --pid-file="$dir/server.pid" --daemon
for _ in $(seq 1 100); do
  if clickhouse-client --host 127.0.0.1 --port "$tcp_port" --query "SELECT 1" >/dev/null 2>&1; then
    echo "$http_port"
    exit 0
  fi
  sleep 0.2
done
echo "clickhouse-server did not start; see $dir/log" >&2
exit 1
