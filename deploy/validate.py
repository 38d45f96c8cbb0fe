#!/usr/bin/env python3
"""Validates the deploy files without a Docker engine or a cluster: every file parses, and
the wiring holds (probes, selectors, autoscaler targets, binaries, configuration keys).
Exits non-zero with one line per problem."""
import pathlib
import re
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


config_rs = (ROOT / "src/config.rs").read_text()
KNOWN_KEYS = set(re.findall(r'\("([a-z_]+\.[a-z_]+)",', config_rs))
# The modules of the registry (src/modules/mod.rs), their own settings and upstream keys.
registry = (ROOT / "src/modules/mod.rs").read_text()
MODULES = re.findall(r"&(\w+)::MODULE", registry.split("pub static MODULES", 1)[1].split(";", 1)[0])
for module in MODULES:
    declaration = (ROOT / f"src/modules/{module}/module.rs").read_text()
    KNOWN_KEYS |= set(re.findall(r'\("([a-z_]+\.[a-z_]+)",', declaration))
    KNOWN_KEYS |= {f"upstreams.{module}", f"upstreams.{module}_internal"}
cargo = (ROOT / "Cargo.toml").read_text()
BINARIES = set(re.findall(r'\[\[bin\]\]\s*name = "([^"]+)"', cargo))


def check_env(where, name):
    if name.startswith("RSVP__"):
        key = ".".join(name[len("RSVP__"):].lower().split("__"))
        if key not in KNOWN_KEYS:
            problem(where, f"{name} names no configuration key ({key})")


def check_command(where, command):
    if command and command[0] not in BINARIES:
        problem(where, f"command {command[0]!r} is not one of the binaries {sorted(BINARIES)}")


# Kubernetes
docs = [d for d in yaml.safe_load_all((ROOT / "deploy/k8s/rsvp.yaml").read_text()) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
def check_secret_files_readable(where, pod):
    """A non-root pod must be able to read the secret files it mounts: Kubernetes writes them
    owned by root (group fsGroup when set), so the mode must let the pod's user read them
    through the group (with fsGroup) or through 'other'."""
    context = pod.get("securityContext", {})
    uid = context.get("runAsUser")
    if not context.get("runAsNonRoot") and uid in (None, 0):
        return
    mounted = {m["name"] for c in pod.get("containers", []) for m in c.get("volumeMounts", [])}
    for volume in pod.get("volumes", []):
        secret = volume.get("secret")
        if secret is None or volume["name"] not in mounted:
            continue
        mode = secret.get("defaultMode", 0o644)
        readable = bool(mode & 0o004) or (bool(mode & 0o040) and "fsGroup" in context)
        if not readable:
            problem(where, f"secret volume {volume['name']!r} (mode {mode:o}) is unreadable to "
                           f"user {uid}: give the pod an fsGroup and the file group read")


for name, dep in deployments.items():
    where = f"k8s Deployment {name}"
    check_secret_files_readable(where, dep["spec"]["template"]["spec"])
    labels = dep["spec"]["template"]["metadata"]["labels"]
    if dep["spec"]["selector"]["matchLabels"] != labels:
        problem(where, "selector does not match the pod labels")
    for c in dep["spec"]["template"]["spec"]["containers"]:
        check_command(where, c.get("command"))
        if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
            problem(where, "liveness probe must be GET /healthz")
        if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
            problem(where, "readiness probe must be GET /readyz")
        port_names = {p["name"] for p in c.get("ports", [])}
        for env in c.get("env", []):
            check_env(where, env["name"])
        bind = next((e.get("value") for e in c.get("env", []) if e["name"] == "RSVP__SERVER__BIND"), None)
        ports = {str(p["containerPort"]) for p in c.get("ports", [])}
        if bind and bind.rsplit(":", 1)[1] not in ports:
            problem(where, f"binds {bind} but exposes {sorted(ports)}")
    if not any(s["spec"]["selector"] == labels for s in services.values()):
        problem(where, "no Service selects it")
    for s in services.values():
        if s["spec"]["selector"] == labels:
            for p in s["spec"]["ports"]:
                if isinstance(p.get("targetPort"), str) and p["targetPort"] not in port_names:
                    problem(f"k8s Service {s['metadata']['name']}", f"targetPort {p['targetPort']} not a container port")
for hpa in by_kind.get("HorizontalPodAutoscaler", []):
    target = hpa["spec"]["scaleTargetRef"]["name"]
    if target not in deployments:
        problem(f"k8s HPA {hpa['metadata']['name']}", f"targets missing Deployment {target}")
# Hardening, as checkov and kube-score ask it.
hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind.get("HorizontalPodAutoscaler", [])}
pdb_selectors = [p["spec"]["selector"]["matchLabels"] for p in by_kind.get("PodDisruptionBudget", [])]
for name, dep in deployments.items():
    where = f"k8s Deployment {name}"
    pod = dep["spec"]["template"]["spec"]
    if name in hpa_targets and "replicas" in dep["spec"]:
        problem(where, "fixed replicas beside an autoscaler: every apply would reset the scale")
    if dep["spec"]["template"]["metadata"]["labels"] not in pdb_selectors:
        problem(where, "no PodDisruptionBudget selects its pods")
    if pod.get("automountServiceAccountToken") is not False:
        problem(where, "automountServiceAccountToken must be false (the pods never call the API)")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        wanted = {
            "allowPrivilegeEscalation": sc.get("allowPrivilegeEscalation") is False,
            "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
            "capabilities.drop ALL": "ALL" in sc.get("capabilities", {}).get("drop", []),
            "seccompProfile RuntimeDefault": sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        }
        for setting, ok in wanted.items():
            if not ok:
                problem(where, f"container {c['name']}: securityContext lacks {setting}")
        if "preStop" not in c.get("lifecycle", {}):
            problem(where, f"container {c['name']}: no preStop pause before SIGTERM")
        if c.get("image", "").endswith(":latest") or ":" not in c.get("image", ""):
            problem(where, f"container {c['name']}: image {c.get('image')!r} is not pinned")
for sts in by_kind.get("StatefulSet", []):
    where = f"k8s StatefulSet {sts['metadata']['name']}"
    pod = sts["spec"]["template"]["spec"]
    if pod.get("automountServiceAccountToken") is not False:
        problem(where, "automountServiceAccountToken must be false")
    for c in pod["containers"]:
        for needed in ("resources", "readinessProbe", "livenessProbe"):
            if needed not in c:
                problem(where, f"container {c['name']}: no {needed}")
for ing in by_kind.get("Ingress", []):
    if not ing["spec"].get("ingressClassName") or not ing["spec"].get("tls"):
        problem(f"k8s Ingress {ing['metadata']['name']}", "needs an ingressClassName and a tls section")
policies = by_kind.get("NetworkPolicy", [])
if not any(p["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": "rsvp"}
           and not p["spec"].get("ingress") for p in policies):
    problem("k8s", "no default-deny NetworkPolicy for the rsvp pods")
for name in deployments:
    component = deployments[name]["spec"]["template"]["metadata"]["labels"]
    if not any(p["spec"]["podSelector"].get("matchLabels") == component for p in policies):
        problem(f"k8s Deployment {name}", "no NetworkPolicy says who may reach it")

for ing in by_kind.get("Ingress", []):
    for rule in ing["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            svc = path["backend"]["service"]["name"]
            if svc not in services:
                problem(f"k8s Ingress {ing['metadata']['name']}", f"routes to missing Service {svc}")
for url_env in [f"RSVP__UPSTREAMS__{m.upper()}" for m in MODULES] + ["RSVP__NATS__URL",
                "RSVP__GATEWAY__RATE_LIMIT_REDIS_URL"]:
    for dep in deployments.values():
        for c in dep["spec"]["template"]["spec"]["containers"]:
            for env in c.get("env", []):
                if env["name"] == url_env:
                    host = re.sub(r"^\w+://([^:/]+).*$", r"\1", env["value"])
                    if host not in services:
                        problem(f"k8s Deployment {dep['metadata']['name']}", f"{url_env} points at unknown Service {host}")

# Compose
for file in sorted((ROOT / "deploy").glob("compose.*.yml")):
    compose = yaml.safe_load(file.read_text())
    names = set(compose["services"])
    for name, svc in compose["services"].items():
        where = f"{file.name} service {name}"
        if "build" in svc:
            check_command(where, svc.get("command"))
            dockerfile = ROOT / "deploy" / svc["build"]["context"] / svc["build"]["dockerfile"]
            if not dockerfile.resolve().exists():
                problem(where, f"no Dockerfile at {dockerfile}")
        for env in (svc.get("environment") or {}):
            check_env(where, env)
        deps = svc.get("depends_on") or []
        for dep in (deps if isinstance(deps, list) else deps.keys()):
            if dep not in names:
                problem(where, f"depends on unknown service {dep}")
        if svc.get("restart") != "unless-stopped":
            problem(where, "restart must be unless-stopped (a crash or a reboot would leave it down)")
        if "healthcheck" not in svc:
            problem(where, "no healthcheck: depends_on can only wait for it to start")
        if "build" in svc:
            # A named volume mounted where the image has no folder is created owned by root:
            # the image's non-root user could not write its signing key there.
            image = (ROOT / "deploy/Dockerfile").read_text()
            for mount in svc.get("volumes") or []:
                target = str(mount).split(":")[1] if ":" in str(mount) else str(mount)
                if not re.search(r"install -d -o 10001[^\n]*" + re.escape(target) + r"(\s|$)", image):
                    problem(where, f"volume at {target}: the image does not create it owned by uid 10001")
        environment = svc.get("environment") or {}
        # Passwords come from secret files, never from the environment or a URL in it.
        if "POSTGRES_PASSWORD" in environment:
            problem(where, "POSTGRES_PASSWORD in the environment: use POSTGRES_PASSWORD_FILE and a secret")
        if re.search(r"://[^/@:]+:[^/@]+@", str(environment.get("RSVP__DATABASE__URL", ""))):
            problem(where, "a password in RSVP__DATABASE__URL: use RSVP__DATABASE__PASSWORD_FILE and a secret")
        for key, value in environment.items():
            if key.endswith("_FILE") and str(value).startswith("/run/secrets/"):
                secret = str(value).removeprefix("/run/secrets/")
                if secret not in (svc.get("secrets") or []) or secret not in (compose.get("secrets") or {}):
                    problem(where, f"{key} reads secret {secret}, which the service is not given")
        for env, value in (svc.get("environment") or {}).items():
            if env.startswith("RSVP__UPSTREAMS__") or env == "RSVP__NATS__URL" or env == "RSVP__DATABASE__URL":
                for url in str(value).split(","):
                    host = re.sub(r"^\w+://(?:[^@/]+@)?([^:/]+).*$", r"\1", url.strip())
                    if host not in names:
                        problem(where, f"{env} points at unknown service {host}")

# Dockerfile: everything it copies exists, and it builds every binary it ships.
dockerfile = (ROOT / "deploy/Dockerfile").read_text()
for line in dockerfile.splitlines():
    if line.startswith("COPY ") and "--from" not in line:
        for src in line.split()[1:-1]:
            if not (ROOT / src).exists():
                problem("Dockerfile", f"COPY source {src} does not exist")
for binary in re.findall(r"/src/target/release/([\w-]+)", dockerfile):
    if binary not in BINARIES:
        problem("Dockerfile", f"ships unknown binary {binary}")

# Every module of the registry ships and runs as a service in every deploy format.
compose_split = yaml.safe_load((ROOT / "deploy/compose.split.yml").read_text())
for module in MODULES:
    binary = f"rsvp-{module}"
    if binary not in BINARIES:
        problem("Cargo.toml", f"no [[bin]] {binary} for module {module}")
    if binary not in re.findall(r"/src/target/release/([\w-]+)", dockerfile):
        problem("Dockerfile", f"does not ship {binary}")
    if not any((svc.get("command") or [None])[0] == binary for svc in compose_split["services"].values()):
        problem("compose.split.yml", f"no service runs {binary}")
    if not any(c.get("command", [None])[0] == binary
               for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"]):
        problem("k8s", f"no Deployment runs {binary}")
    if not (ROOT / f"deploy/systemd/{binary}.service").exists():
        problem("systemd", f"no unit {binary}.service")
    if binary not in (ROOT / "deploy/run-split.sh").read_text():
        problem("run-split.sh", f"does not start {binary}")

# Shell scripts parse.
for script in (ROOT / "deploy").glob("*.sh"):
    if subprocess.run(["bash", "-n", str(script)]).returncode != 0:
        problem(script.name, "bash -n failed")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"deploy files valid: {len(docs)} Kubernetes objects, {len(list((ROOT / 'deploy').glob('compose.*.yml')))} Compose files, Dockerfile, scripts")
