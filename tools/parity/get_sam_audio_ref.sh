#!/usr/bin/env bash
# The official PyTorch SAM-Audio reference for tools/parity/sam_audio_ref.py, at pinned commits:
#   DEST/sam-audio          facebookresearch/sam-audio         (sam_audio/)
#   DEST/dacvae             facebookresearch/dacvae            (dacvae/; ishine/dacvae is the same)
#   DEST/perception_models  facebookresearch/perception_models (core/)
# plus the PyPI packages the reference imports, pip-installed into the parity python.
#
#   tools/parity/get_sam_audio_ref.sh [DEST]      # DEST defaults to build/sam-audio-ref
#
# SAM_AUDIO_MIRROR=DIR takes the trees from bare repositories DIR/<owner>+<name>/repo instead of
# cloning from GitHub (SAM_AUDIO_GIT_BASE, default https://github.com). PARITY_PY names the
# python to install into (default .parity-venv/bin/python).
# Trees already present and packages already importable are left alone.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEST=${1:-$ROOT/build/sam-audio-ref}
PARITY_PY=${PARITY_PY:-$ROOT/.parity-venv/bin/python}
GIT_BASE=${SAM_AUDIO_GIT_BASE:-https://github.com}

# name | GitHub repositories to try, in order | commit | paths kept
SOURCES=(
  "sam-audio|facebookresearch/sam-audio|68b48d48fff1ad776d3afefbe634eb5f5d60ba7b|sam_audio pyproject.toml LICENSE README.md"
  "dacvae|facebookresearch/dacvae ishine/dacvae|414c20785fc3a28373073ea8ef7a1316eeeaca6e|dacvae setup.py LICENSE README.md"
  "perception_models|facebookresearch/perception_models|3e352cca660658d4b5c90f42a7808b11469e4c66|core LICENSE.PE LICENSE.PLM"
)

# What the reference imports from PyPI beyond torch, transformers and numpy. audiotools (dacvae's
# base class) comes without its dependencies; these are the ones it imports at import time
# (tensorboard through torch.utils.tensorboard, which needs absl).
PIP_DEPS=(torchdiffeq==0.2.5 einops==0.8.2 scipy==1.17.1 julius==0.2.8 soundfile==0.14.0
  flatten-dict==0.5.0 ffmpy==1.0.0 importlib-resources==7.1.0 randomname==0.2.1)
PIP_NO_DEPS=(descript-audiotools==0.7.2 tensorboard==2.21.0 absl-py==2.5.1)

# extract <commit> <paths> from the bare repository $1 into $2
extract() {
  local gitdir=$1 out=$2 commit=$3 paths=$4
  if ! git --git-dir="$gitdir" cat-file -e "$commit^{commit}" 2>/dev/null; then
    echo "commit $commit is not in $gitdir" >&2
    return 1
  fi
  mkdir -p "$out"
  # the mirrors lack some large media blobs outside the kept paths; git names them on stderr
  # shellcheck disable=SC2086
  git --git-dir="$gitdir" archive "$commit" $paths 2> >(grep -v "invalid object" >&2) \
    | tar -x -C "$out"
}

fetch_one() {
  local name=$1 repos=$2 commit=$3 paths=$4 out=$DEST/$1 repo tmp
  if [ -f "$out/.commit" ] && [ "$(cat "$out/.commit")" = "$commit" ]; then
    echo "$name: present at $commit"
    return 0
  fi
  rm -rf "$out" "$out.part"
  for repo in $repos; do
    if [ -n "${SAM_AUDIO_MIRROR:-}" ]; then
      local gitdir=$SAM_AUDIO_MIRROR/${repo/\//+}/repo
      [ -d "$gitdir" ] || continue
      extract "$gitdir" "$out.part" "$commit" "$paths" || { rm -rf "$out.part"; continue; }
    else
      tmp=$(mktemp -d)
      # a blobless clone with a sparse checkout fetches only the kept paths' files
      if git clone -q --filter=blob:none --no-checkout "$GIT_BASE/$repo.git" "$tmp/r" \
        && git -C "$tmp/r" sparse-checkout set --no-cone $(printf '/%s ' $paths) \
        && git -C "$tmp/r" checkout -q "$commit"; then
        # shellcheck disable=SC2086
        mkdir -p "$out.part" && tar -c -C "$tmp/r" $paths | tar -x -C "$out.part" \
          || rm -rf "$out.part"
      fi
      rm -rf "$tmp"
    fi
    if [ -d "$out.part" ]; then
      echo "$commit" > "$out.part/.commit"
      mv "$out.part" "$out"
      echo "$name: $repo at $commit"
      return 0
    fi
  done
  echo "$name: could not get $commit from any of: $repos" \
    "${SAM_AUDIO_MIRROR:+(mirror $SAM_AUDIO_MIRROR)}" >&2
  return 1
}

mkdir -p "$DEST"
for entry in "${SOURCES[@]}"; do
  IFS='|' read -r name repos commit paths <<< "$entry"
  fetch_one "$name" "$repos" "$commit" "$paths"
done

if [ ! -x "$PARITY_PY" ]; then
  echo "no parity python at $PARITY_PY (make parity creates it; or set PARITY_PY)" >&2
  exit 1
fi
# importing sam_audio (through sam_audio_ref.setup, with the stubs) is the test
probe() {
  PYTHONPATH="$ROOT/tools/parity" "$PARITY_PY" -W ignore -c \
    "import sam_audio_ref; sam_audio_ref.setup('$DEST')"
}
if probe 2>/dev/null; then
  echo "pip: the reference imports; nothing to install"
else
  "$PARITY_PY" -m pip install -q "${PIP_DEPS[@]}"
  "$PARITY_PY" -m pip install -q --no-deps "${PIP_NO_DEPS[@]}"
  probe
  echo "pip: installed ${PIP_DEPS[*]} ${PIP_NO_DEPS[*]}; the reference imports"
fi
