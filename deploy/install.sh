#!/bin/sh
# The project's one install step. `make` runs it for development and CI (`make test`), and the
# container image (deploy/Dockerfile) runs it to install the package: both take every version
# from deploy/constraints.txt, so the image holds the versions the test suite ran on.
#
#   sh deploy/install.sh PIP dev     editable, with the test tools: what `make` and CI install
#   sh deploy/install.sh PIP image   the package and its `k8s` extra (dagster-k8s, for the chart's
#                                    K8sRunLauncher), no test tools: what the image installs
#
# `make constraints` writes deploy/constraints.txt again from a development install.
set -eu
cd "$(dirname "$0")/.."
pip=${1:?usage: sh deploy/install.sh PIP dev|image}
case ${2:-} in
  dev) set -- --editable '.[dev]' ;;
  image) set -- '.[k8s]' ;;
  *) echo "deploy/install.sh: the second argument is 'dev' or 'image', not '${2:-}'" >&2; exit 2 ;;
esac
"$pip" install --quiet --constraint deploy/constraints.txt --upgrade pip
"$pip" install --quiet --constraint deploy/constraints.txt "$@"
