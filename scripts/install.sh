#!/usr/bin/env bash
# Installs cairn (make install, make uninstall):
#   PREFIX/bin/cairn and the stage programs beside it (cairn exec puts its own
#     folder first in a task's PATH, so the stages are found wherever it is)
#   PREFIX/share/bash-completion/completions/cairn   (scripts/cairn.bash)
#   PREFIX/share/cairn/configs/*.ini                 (the example pipelines)
# usage: scripts/install.sh BIN PREFIX [--uninstall]
set -eu
[ $# -ge 2 ] || { echo "usage: scripts/install.sh BIN PREFIX [--uninstall]" >&2; exit 2; }
bin=$1 prefix=$2 root=$(cd "$(dirname "$0")/.." && pwd)
progs=$(cd "$bin" 2>/dev/null && ls cairn cairn-* 2>/dev/null || true)
if [ "${3:-}" = --uninstall ]; then
	for p in $progs; do rm -f "$prefix/bin/$p" "$prefix/share/bash-completion/completions/$p"; done
	rm -rf "$prefix/share/cairn"
	echo "removed cairn from $prefix"
	exit 0
fi
[ -x "$bin/cairn" ] || { echo "install: $bin/cairn is not built: run make first" >&2; exit 2; }
install -d "$prefix/bin" "$prefix/share/bash-completion/completions" "$prefix/share/cairn/configs"
for p in $progs; do install -m 755 "$bin/$p" "$prefix/bin/$p"; done
install -m 644 "$root/scripts/cairn.bash" "$prefix/share/bash-completion/completions/cairn"
# bash-completion loads a command's file by its name: one for each program
for p in $progs; do
	[ "$p" = cairn ] || ln -sf cairn "$prefix/share/bash-completion/completions/$p"
done
install -m 644 "$root"/configs/*.ini "$prefix/share/cairn/configs/"
echo "installed $(echo $progs | wc -w) programs in $prefix/bin, the bash completion and the example specs in $prefix/share"
