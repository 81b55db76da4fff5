#!/usr/bin/env bash
# Apache's forced-stop crash (CONTRIBUTING.md, "Other Pythons"): starts Apache (event MPM)
# N times per variant, sends 40 requests on 8 connections and stops it with SIGTERM while
# they are being served, then counts the stops whose error log has a child's segmentation
# fault.
# Variants: plain (no mod_rwsgi, a static file), rwsgi-static (mod_rwsgi loaded, a static
# file), rwsgi-daemon (a WSGI app in a daemon group), rwsgi-embedded (in the children).
#
#   tests/apache_stop_loop.sh MOD_RWSGI_SO [N] [VARIANT...]
#   RWSGI_PYTHONS=trixie:3.13 tests/pythons.sh --stop-loop [N]    in a chroot (root)
set -euo pipefail
so=$1
n=${2:-60}
shift $(($# >= 2 ? 2 : 1))
variants=${*:-plain rwsgi-static rwsgi-daemon rwsgi-embedded}
python=${PYTHON:-python3}
base=$(mktemp -d /tmp/rwsgi-stop-loop-XXXXXX)
chmod 755 "$base"
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
apache_pid=
trap '[ -n "$apache_pid" ] && kill -KILL "$apache_pid" 2>/dev/null; rm -rf "$base"' EXIT

config() {
    local variant=$1 d=$2
    echo "ServerRoot $d"
    echo "Listen 127.0.0.1:$port"
    echo "PidFile $d/pid"
    echo "DefaultRuntimeDir $d"
    echo "ErrorLog $d/error.log"
    echo "ServerName localhost"
    echo "User www-data"
    echo "Group www-data"
    echo "LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so"
    echo "LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so"
    echo "StartServers 2"
    echo "ServerLimit 2"
    echo "ThreadsPerChild 25"
    echo "MaxRequestWorkers 50"
    echo "DocumentRoot $d/htdocs"
    echo "<Directory $d>"
    echo "    Require all granted"
    echo "</Directory>"
    case $variant in
    rwsgi-*) echo "LoadModule rwsgi_module $so" ;;
    esac
    case $variant in
    rwsgi-daemon)
        echo "WSGIDaemonProcess stoploop threads=4"
        echo "WSGIScriptAlias /app $d/app.wsgi process-group=stoploop"
        ;;
    rwsgi-embedded) echo "WSGIScriptAlias /app $d/app.wsgi process-group=%{GLOBAL}" ;;
    esac
}

# 8 threads, 5 requests each (Connection: close); once a random number (5 to 34) of them
# were answered, SIGTERM to Apache (pid $2), so the stop meets connections being served and
# ended. Prints how many were answered 200.
load() {
    "$python" - "$port" "$1" "$2" <<'PY'
import os, random, signal, socket, sys, threading
port, url, apache = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
stop_after = random.randrange(5, 35)
answered = []
lock = threading.Lock()
def client():
    for _ in range(5):
        try:
            s = socket.create_connection(("127.0.0.1", port), 2)
            s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            s.close()
        except OSError:
            continue
        if data.startswith(b"HTTP/1.1 200"):
            with lock:
                answered.append(1)
                if len(answered) == stop_after:
                    os.kill(apache, signal.SIGTERM)
threads = [threading.Thread(target=client) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if len(answered) < stop_after:
    os.kill(apache, signal.SIGTERM)
print(len(answered))
PY
}

for variant in $variants; do
    d=$base/$variant
    mkdir -p "$d/htdocs"
    chmod 755 "$d" "$d/htdocs"
    head -c 2000 /dev/urandom >"$d/htdocs/file.bin"
    printf 'def application(environ, start_response):\n    start_response("200 OK", [("Content-Type", "text/plain")])\n    return [b"hello"]\n' >"$d/app.wsgi"
    chmod 644 "$d/htdocs/file.bin" "$d/app.wsgi"
    config "$variant" "$d" >"$d/httpd.conf"
    url=/file.bin
    case $variant in rwsgi-daemon | rwsgi-embedded) url=/app ;; esac
    crashes=0 answered=0
    for _ in $(seq "$n"); do
        : >"$d/error.log"
        /usr/sbin/apache2 -f "$d/httpd.conf" -DFOREGROUND &
        apache_pid=$!
        # Bounded wait for the first answer (20 s), so the load meets a serving Apache.
        "$python" - "$port" "$url" <<'PY' || true
import sys, time, urllib.request
port, url = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{url}", timeout=2) as r:
            if r.status == 200:
                break
    except OSError:
        time.sleep(0.1)
PY
        answered=$((answered + $(load "$url" "$apache_pid")))
        wait "$apache_pid" 2>/dev/null || true
        apache_pid=
        grep -q "Segmentation fault" "$d/error.log" && crashes=$((crashes + 1))
    done
    echo "$variant: $crashes of $n stops with a child's segmentation fault ($answered requests answered 200)"
done
