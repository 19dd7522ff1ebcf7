#!/usr/bin/env bash
# Installs the system libraries MuJoCo needs for offscreen rendering (EGL, or OSMesa as a
# fallback) when they are missing, or says exactly what to install.
set -euo pipefail

have() { ldconfig -p 2>/dev/null | grep -q "$1"; }

if { have 'libEGL.so.1' && have 'libEGL_mesa.so.0'; } || have 'libOSMesa.so'; then
  exit 0
fi

packages="libegl1 libgl1-mesa-dri libosmesa6"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "Offscreen OpenGL (EGL or OSMesa) is missing. Install your distribution's packages for" \
       "libEGL with Mesa drivers, or OSMesa (Debian/Ubuntu: $packages), then re-run." >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "Offscreen OpenGL is missing. As root, run: apt-get install -y $packages" >&2
  exit 1
fi
echo "Installing offscreen OpenGL libraries: $packages"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages >/dev/null
