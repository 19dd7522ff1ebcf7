#!/usr/bin/env bash
# Installs the system libraries the project needs when they are missing, or says exactly what to
# install: offscreen OpenGL for MuJoCo (EGL, or OSMesa as a fallback) and libusb-1.0 for
# pyrealsense2.
set -euo pipefail

have() { ldconfig -p 2>/dev/null | grep -q "$1"; }

packages=""
if ! { { have 'libEGL.so.1' && have 'libEGL_mesa.so.0'; } || have 'libOSMesa.so'; }; then
  packages="$packages libegl1 libgl1-mesa-dri libosmesa6"
fi
if ! have 'libusb-1.0.so.0'; then
  packages="$packages libusb-1.0-0"
fi
packages="${packages# }"
[ -z "$packages" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "System libraries are missing: offscreen OpenGL (libEGL with Mesa drivers, or OSMesa) and/or" \
       "libusb-1.0. Install your distribution's packages for them (Debian/Ubuntu: $packages)," \
       "then re-run." >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "System libraries are missing. As root, run: apt-get install -y $packages" >&2
  exit 1
fi
echo "Installing system libraries: $packages"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages >/dev/null
