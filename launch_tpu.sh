#!/usr/bin/env bash
# Launches `python -m cpt_jax.train` on a Cloud TPU VM or pod slice and keeps it going through preemptions.
# See `launch_tpu.sh --help` and docs/tpu.md.
set -euo pipefail

readonly PROG="launch_tpu.sh"
readonly PREEMPTED_EXIT_CODE=75   # cpt_jax.loop.PREEMPTED_EXIT_CODE: checkpoint written after SIGTERM
readonly SSH_LOST_EXIT_CODE=255   # ssh: connection lost (the VM went away under us)
readonly REMOTE_DIR="\$HOME/cpt_jax"   # on every worker; expanded there, by the remote shell
readonly REMOTE_VENV="\$HOME/.venvs/cpt_jax"
readonly REMOTE_TARBALL="cpt_jax.tar.gz"
readonly LIBTPU_INDEX="https://storage.googleapis.com/jax-releases/libtpu_releases.html"

usage() {
  cat <<'EOF'
Usage:
  launch_tpu.sh --name NAME --zone ZONE --type TYPE --config CONFIG --workdir WORKDIR [options] [-- TRAIN_ARGS...]
  launch_tpu.sh --status --name NAME --zone ZONE [--queued] [--project P]
  launch_tpu.sh --delete --name NAME --zone ZONE [--queued] [--project P]

Creates (or reuses) a TPU VM / pod slice, installs this repository on every worker, runs
  python -m cpt_jax.train --config CONFIG --workdir WORKDIR TRAIN_ARGS...
on all workers at once, streams their output, and relaunches after a preemption: the trainer exits 75
after a SIGTERM-triggered checkpoint, or the TPU turns PREEMPTED/TERMINATED; the TPU is then recreated
if needed and the same command rerun, which resumes from the latest checkpoint in WORKDIR.

Required for a launch:
  --name NAME          TPU (and queued-resource) name: lowercase letters, digits, '-'
  --zone ZONE          e.g. us-central2-b, us-west4-a
  --type TYPE          accelerator type, e.g. v4-8, v4-32, v5litepod-8, v5litepod-16, v5p-8, v6e-8
  --config CONFIG      config file, relative to the repository root (e.g. configs/pretrain_tiny.py)
  --workdir WORKDIR    run directory; use gs://BUCKET/PATH on multi-host slices and spot/queued TPUs
Options:
  --version VERSION    TPU runtime (default by TPU generation: tpu-ubuntu2204-base for v2/v3/v4,
                       v2-alpha-tpuv5-lite for v5litepod, v2-alpha-tpuv5 for v5p, v2-alpha-tpuv6e for v6e)
  --project PROJECT    GCP project (default: gcloud's configured project)
  --spot               create a Spot TPU (preemptible, cheaper)
  --queued             request the TPU through `gcloud compute tpus queued-resources create`
  --repo URL           `git clone` URL on the workers instead of copying this working tree
  --ref REF            with --repo: branch, tag or commit to check out (default: the remote's HEAD)
  --skip-install       do not copy/install the project (the TPU was set up by an earlier launch)
  --max-restarts N     relaunches after preemption before giving up (default 10)
  --restart-delay S    seconds to wait after exit code 75 before looking at the TPU state (default 60)
  --poll-seconds S     seconds between state polls while waiting for a TPU (default 30)
  --dry-run            print every gcloud command (prefixed with "+ ") instead of running it;
                       the TPU is taken to be absent at first, then ready, and every command succeeds
  --status             describe the TPU (and queued resource with --queued), then exit
  --delete             delete the TPU (the queued resource and its TPU with --queued), then exit
  -h, --help           this text
Everything after `--` goes to cpt_jax.train unchanged, e.g. -- --config.opt.lr=1e-3

Exit status: the trainer's (0 when training finished); 2 for bad arguments; the last exit status when
--max-restarts relaunches were used up.
EOF
}

die_usage() {
  printf '%s: error: %s (see %s --help)\n' "$PROG" "$1" "$PROG" >&2
  exit 2
}

die() {
  printf '%s: error: %s\n' "$PROG" "$1" >&2
  exit 1
}

info() {
  printf '%s: %s\n' "$PROG" "$*" >&2
}

# Shell-quotes one word so that the printed command can be pasted back into a shell.
quote() {
  case $1 in
    '') printf "''" ;;
    *[!A-Za-z0-9_./:=@%+,-]*) printf "'%s'" "${1//\'/\'\\\'\'}" ;;
    *) printf '%s' "$1" ;;
  esac
}

quote_all() {
  local out="" word
  for word in "$@"; do
    out+="${out:+ }$(quote "$word")"
  done
  printf '%s' "$out"
}

# Runs a command, or prints it with --dry-run. Real runs echo the command to stderr first.
run() {
  if [[ $DRY_RUN == 1 ]]; then
    printf '+ %s\n' "$(quote_all "$@")"
    return 0
  fi
  printf '+ %s\n' "$(quote_all "$@")" >&2
  "$@"
}

# ---------------------------------------------------------------------------------------------- arguments
NAME="" ZONE="" TYPE="" VERSION="" PROJECT="" CONFIG="" WORKDIR="" REPO_URL="" REPO_REF="HEAD"
SPOT=0 QUEUED=0 DRY_RUN=0 ACTION=launch SKIP_INSTALL=0
MAX_RESTARTS=10 RESTART_DELAY=60 POLL_SECONDS=30
TRAIN_ARGS=()

need_value() {  # $1: flag, $2: number of arguments left including the flag
  [[ $2 -ge 2 ]] || die_usage "$1 needs a value"
}

while [[ $# -gt 0 ]]; do
  arg=$1
  value=""
  has_inline=0
  if [[ $arg == --*=* ]]; then
    value=${arg#*=}
    arg=${arg%%=*}
    has_inline=1
  fi
  case $arg in
    --name | --zone | --type | --version | --project | --config | --workdir | --repo | --ref | \
      --max-restarts | --restart-delay | --poll-seconds)
      if [[ $has_inline == 0 ]]; then
        need_value "$arg" "$#"
        value=$2
        shift
      fi
      case $arg in
        --name) NAME=$value ;;
        --zone) ZONE=$value ;;
        --type) TYPE=$value ;;
        --version) VERSION=$value ;;
        --project) PROJECT=$value ;;
        --config) CONFIG=$value ;;
        --workdir) WORKDIR=$value ;;
        --repo) REPO_URL=$value ;;
        --ref) REPO_REF=$value ;;
        --max-restarts) MAX_RESTARTS=$value ;;
        --restart-delay) RESTART_DELAY=$value ;;
        --poll-seconds) POLL_SECONDS=$value ;;
      esac
      ;;
    --spot | --queued | --dry-run | --status | --delete | --skip-install | -h | --help)
      [[ $has_inline == 0 ]] || die_usage "$arg takes no value"
      case $arg in
        --spot) SPOT=1 ;;
        --queued) QUEUED=1 ;;
        --dry-run) DRY_RUN=1 ;;
        --skip-install) SKIP_INSTALL=1 ;;
        --status | --delete)
          [[ $ACTION == launch || $ACTION == "${arg#--}" ]] || die_usage "--status and --delete exclude each other"
          ACTION=${arg#--}
          ;;
        -h | --help)
          usage
          exit 0
          ;;
      esac
      ;;
    --)
      shift
      TRAIN_ARGS=("$@")
      break
      ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
  shift
done

[[ -n $NAME ]] || die_usage "--name is required (the TPU's name)"
[[ -n $ZONE ]] || die_usage "--zone is required (the TPU's zone, e.g. us-central2-b)"
[[ $NAME =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
  die_usage "--name '$NAME' is not a valid TPU name (lowercase letters, digits and '-', starting with a letter)"
for pair in "max-restarts:$MAX_RESTARTS" "restart-delay:$RESTART_DELAY" "poll-seconds:$POLL_SECONDS"; do
  [[ ${pair#*:} =~ ^[0-9]+$ ]] || die_usage "--${pair%%:*} must be a whole number, got '${pair#*:}'"
done

if [[ $ACTION == launch ]]; then
  [[ -n $TYPE ]] || die_usage "--type is required (accelerator type, e.g. v4-32 or v5litepod-16)"
  [[ -n $CONFIG ]] || die_usage "--config is required (e.g. configs/pretrain_tiny.py)"
  [[ -n $WORKDIR ]] || die_usage "--workdir is required (gs://BUCKET/PATH for multi-host slices)"
  [[ $TYPE =~ ^(v[0-9]+[a-z]*|v5litepod)-[0-9]+$ ]] ||
    die_usage "--type '$TYPE' is not an accelerator type like v4-32, v5litepod-16 or v6e-8"
  [[ -n $REPO_URL || $REPO_REF == HEAD ]] || die_usage "--ref needs --repo"
fi

GEN=${TYPE%-*}
SIZE=${TYPE##*-}

default_version() {
  case $GEN in
    v2 | v3 | v4) printf 'tpu-ubuntu2204-base' ;;
    v5litepod | v5e) printf 'v2-alpha-tpuv5-lite' ;;
    v5p) printf 'v2-alpha-tpuv5' ;;
    v6e) printf 'v2-alpha-tpuv6e' ;;
    *) return 1 ;;
  esac
}

# Hosts in the slice: v2/v3/v4/v5p sizes count TensorCores (8 per host); v5e/v6e sizes count chips
# (up to 8 on one host, 4 per host beyond that).
host_count() {
  case $GEN in
    v2 | v3 | v4 | v5p) printf '%d' $(((SIZE + 7) / 8)) ;;
    v5litepod | v5e | v6e) if [[ $SIZE -le 8 ]]; then printf 1; else printf '%d' $((SIZE / 4)); fi ;;
    *) printf 0 ;;
  esac
}

if [[ $ACTION == launch && -z $VERSION ]]; then
  VERSION=$(default_version) || die_usage "no default runtime for TPU generation '$GEN'; pass --version"
fi

PROJECT_FLAG=()
[[ -z $PROJECT ]] || PROJECT_FLAG=("--project=$PROJECT")
LOCATION=("--zone=$ZONE" ${PROJECT_FLAG[@]+"${PROJECT_FLAG[@]}"})
SPOT_FLAG=()
[[ $SPOT == 0 ]] || SPOT_FLAG=(--spot)

TMP_DIR=""
cleanup() {
  [[ -z $TMP_DIR ]] || rm -rf "$TMP_DIR"
}
trap cleanup EXIT

# ------------------------------------------------------------------------------------------ TPU state
# Sets STATE to the TPU node's state (READY, CREATING, PREEMPTED, ...) or NOT_FOUND; with --queued, sets
# QR_STATE to the queued resource's (WAITING_FOR_RESOURCES, ACTIVE, SUSPENDED, FAILED, ...) or NOT_FOUND.
# --dry-run: absent the first time, ready afterwards.
DRY_DESCRIBED=0
describe_state() {  # $1: tpu-vm | queued-resources, $2: gcloud --format
  local kind=$1 format=$2 out err
  if [[ $DRY_RUN == 1 ]]; then
    run gcloud compute tpus "$kind" describe "$NAME" "${LOCATION[@]}" --format "$format"
    if [[ $DRY_DESCRIBED == 0 ]]; then
      DESCRIBED=NOT_FOUND
    elif [[ $kind == tpu-vm ]]; then
      DESCRIBED=READY
    else
      DESCRIBED=ACTIVE
    fi
    return 0
  fi
  [[ -n $TMP_DIR ]] || TMP_DIR=$(mktemp -d)
  err="$TMP_DIR/describe.err"
  if out=$(gcloud compute tpus "$kind" describe "$NAME" "${LOCATION[@]}" --format "$format" 2>"$err"); then
    DESCRIBED=${out:-STATE_UNSPECIFIED}
  elif grep -qiE 'NOT_FOUND|not found' "$err"; then
    DESCRIBED=NOT_FOUND
  else
    cat "$err" >&2
    die "could not describe $kind '$NAME' in $ZONE (see gcloud's message above)"
  fi
}

refresh_state() {
  if [[ $QUEUED == 1 ]]; then
    describe_state queued-resources 'value(state.state)'
    QR_STATE=$DESCRIBED
    if [[ $QR_STATE != ACTIVE ]]; then
      STATE=NOT_FOUND
      DRY_DESCRIBED=1
      return 0
    fi
  fi
  describe_state tpu-vm 'value(state)'
  STATE=$DESCRIBED
  DRY_DESCRIBED=1
}

create_tpu() {
  if [[ $QUEUED == 1 ]]; then
    run gcloud compute tpus queued-resources create "$NAME" "${LOCATION[@]}" --node-id="$NAME" \
      --accelerator-type="$TYPE" --runtime-version="$VERSION" ${SPOT_FLAG[@]+"${SPOT_FLAG[@]}"}
  else
    run gcloud compute tpus tpu-vm create "$NAME" "${LOCATION[@]}" --accelerator-type="$TYPE" \
      --version="$VERSION" ${SPOT_FLAG[@]+"${SPOT_FLAG[@]}"}
  fi
}

delete_tpu() {
  if [[ $QUEUED == 1 ]]; then
    run gcloud compute tpus queued-resources delete "$NAME" "${LOCATION[@]}" --force --quiet
  else
    run gcloud compute tpus tpu-vm delete "$NAME" "${LOCATION[@]}" --quiet
  fi
}

# Makes the TPU READY: reuses a ready one, waits for one on its way, recreates a preempted one.
# Sets CREATED=1 when the workers are new (and so need the project installed).
ensure_tpu() {
  CREATED=0
  local waited=0
  while true; do
    refresh_state
    if [[ $QUEUED == 1 ]]; then
      case $QR_STATE in
        NOT_FOUND)
          create_tpu
          CREATED=1
          continue
          ;;
        ACTIVE) ;;
        SUSPENDED | FAILED)
          info "queued resource '$NAME' is $QR_STATE; deleting and requesting it again"
          delete_tpu
          create_tpu
          CREATED=1
          continue
          ;;
        *)
          [[ $waited == 1 ]] || info "queued resource '$NAME' is $QR_STATE; waiting for ACTIVE"
          waited=1
          sleep "$POLL_SECONDS"
          continue
          ;;
      esac
    fi
    case $STATE in
      READY) return 0 ;;
      NOT_FOUND)
        [[ $QUEUED == 0 ]] || die "queued resource '$NAME' is ACTIVE but has no TPU node '$NAME'"
        create_tpu
        CREATED=1
        ;;
      PREEMPTED | TERMINATED)
        info "TPU '$NAME' is $STATE; deleting and creating it again"
        delete_tpu
        create_tpu
        CREATED=1
        ;;
      STOPPED)
        run gcloud compute tpus tpu-vm start "$NAME" "${LOCATION[@]}"
        ;;
      *)
        [[ $waited == 1 ]] || info "TPU '$NAME' is $STATE; waiting for READY"
        waited=1
        sleep "$POLL_SECONDS"
        ;;
    esac
  done
}

# ------------------------------------------------------------------------------------------ workers
ssh_all() {  # $1: the command each worker runs
  run gcloud compute tpus tpu-vm ssh "$NAME" "${LOCATION[@]}" --worker=all --command "$1"
}

# Copies the working tree's files (tracked, or untracked and not ignored: no .venv, runs, .git) to every
# worker, or clones --repo there; then creates the venv and installs the project with JAX for TPU.
install_project() {
  local repo_root fetch
  if [[ -n $REPO_URL ]]; then
    fetch="[ -d $REMOTE_DIR/.git ] || git clone --quiet --no-checkout $(quote "$REPO_URL") $REMOTE_DIR"
    fetch+="; git -C $REMOTE_DIR fetch --quiet origin $(quote "$REPO_REF")"
    fetch+="; git -C $REMOTE_DIR checkout --quiet --force FETCH_HEAD"
  else
    repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    if [[ $DRY_RUN == 1 ]]; then
      TARBALL="${TMPDIR:-/tmp}/launch_tpu.XXXXXX/$REMOTE_TARBALL"
      printf '+ git -C %s ls-files -z --cached --others --exclude-standard | tar -C %s --null -T - -czf %s\n' \
        "$(quote "$repo_root")" "$(quote "$repo_root")" "$(quote "$TARBALL")"
    else
      [[ -n $TMP_DIR ]] || TMP_DIR=$(mktemp -d)
      TARBALL="$TMP_DIR/$REMOTE_TARBALL"
      info "packing $repo_root (git-tracked and unignored files) into $TARBALL"
      git -C "$repo_root" ls-files -z --cached --others --exclude-standard |
        tar -C "$repo_root" --null -T - -czf "$TARBALL"
    fi
    run gcloud compute tpus tpu-vm scp "$TARBALL" "$NAME:$REMOTE_TARBALL" "${LOCATION[@]}" --worker=all
    fetch="mkdir -p $REMOTE_DIR && tar -xzf $REMOTE_TARBALL -C $REMOTE_DIR && rm -f $REMOTE_TARBALL"
  fi
  ssh_all "set -e; $fetch; \
if [ ! -x $REMOTE_VENV/bin/pip ]; then python3 -m venv --clear $REMOTE_VENV || \
{ sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv && python3 -m venv --clear $REMOTE_VENV; }; fi; \
$REMOTE_VENV/bin/pip install --quiet --upgrade pip; \
$REMOTE_VENV/bin/pip install --quiet -e $REMOTE_DIR \"jax[tpu]\" -f $LIBTPU_INDEX"
}

train_command() {
  local cmd="cd $REMOTE_DIR && PYTHONUNBUFFERED=1 exec $REMOTE_VENV/bin/python -m cpt_jax.train"
  cmd+=" --config $(quote "$CONFIG") --workdir $(quote "$WORKDIR")"
  if [[ ${#TRAIN_ARGS[@]} -gt 0 ]]; then
    cmd+=" $(quote_all "${TRAIN_ARGS[@]}")"
  fi
  printf '%s' "$cmd"
}

# ------------------------------------------------------------------------------------------ actions
case $ACTION in
  status)
    [[ $QUEUED == 0 ]] || run gcloud compute tpus queued-resources describe "$NAME" "${LOCATION[@]}"
    run gcloud compute tpus tpu-vm describe "$NAME" "${LOCATION[@]}"
    exit 0
    ;;
  delete)
    delete_tpu
    exit 0
    ;;
esac

HOSTS=$(host_count)
if [[ $WORKDIR != gs://* ]]; then
  if [[ $HOSTS -gt 1 ]]; then
    info "warning: --workdir '$WORKDIR' is not a gs:// path, but $TYPE has $HOSTS hosts: each host would keep" \
      "its own checkpoint files on its local disk. Use gs://BUCKET/PATH so that all hosts share one run directory."
  elif [[ $SPOT == 1 || $QUEUED == 1 ]]; then
    info "warning: --workdir '$WORKDIR' is on the TPU VM's disk, which a preemption deletes along with the VM;" \
      "use gs://BUCKET/PATH so that a relaunch can resume."
  fi
fi

ensure_tpu
if [[ $SKIP_INSTALL == 0 || $CREATED == 1 ]]; then
  install_project
fi

TRAIN_CMD=$(train_command)
restarts=0
while true; do
  rc=0
  ssh_all "$TRAIN_CMD" || rc=$?
  if [[ $rc == 0 ]]; then
    if [[ $DRY_RUN == 1 ]]; then info "dry run: nothing was run"; else info "training finished on all workers"; fi
    exit 0
  fi
  if [[ $rc == "$PREEMPTED_EXIT_CODE" ]]; then
    info "the trainer exited $rc (checkpoint written after SIGTERM: preemption or maintenance)"
    [[ $RESTART_DELAY == 0 ]] || sleep "$RESTART_DELAY"
  fi
  refresh_state
  if [[ $rc != "$PREEMPTED_EXIT_CODE" && $rc != "$SSH_LOST_EXIT_CODE" && $STATE == READY ]]; then
    info "the trainer failed with exit status $rc on a healthy TPU; not relaunching"
    exit "$rc"
  fi
  if [[ $restarts -ge $MAX_RESTARTS ]]; then
    info "exit status $rc, TPU state $STATE; --max-restarts=$MAX_RESTARTS relaunches used up"
    exit "$rc"
  fi
  restarts=$((restarts + 1))
  info "exit status $rc, TPU state $STATE: relaunch $restarts of $MAX_RESTARTS (resumes from $WORKDIR)"
  ensure_tpu
  if [[ $CREATED == 1 ]]; then
    install_project
  fi
done
