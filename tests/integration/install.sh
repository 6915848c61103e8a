# make install's script (scripts/install.sh) into a prefix, then the
# installed cairn alone, without the build tree on PATH: a run whose tasks
# call stage programs finds them beside cairn; the example spec runs; the
# bash completion (scripts/cairn.bash) completes commands, options (from
# --help), specs, run folders, stages and tasks; uninstall removes it all.
source "$(dirname "$0")/../lib.sh"
cd "$T"

P=$T/prefix
check_rc "install: exit 0" 0 bash "$ROOT/scripts/install.sh" "$CAIRN_BIN" "$P"
check "install: cairn and every stage program in PREFIX/bin" \
	test -x "$P/bin/cairn" -a -x "$P/bin/cairn-synth" -a -x "$P/bin/cairn-train-unet"
check_eq "install: as many programs as were built" "$(ls "$P/bin" | wc -l)" "$(ls "$CAIRN_BIN" | grep -c '^cairn')"
check "install: the completion where bash-completion looks" test -f "$P/share/bash-completion/completions/cairn"
check "install: the example specs" test -f "$P/share/cairn/configs/demo.ini"
check_rc "install: no build, a clear refusal" 2 bash "$ROOT/scripts/install.sh" "$T/nobin" "$T/p2"
check_grep "install: ... saying to run make" "nobin/cairn is not built: run make first" "$T/.out"

# The installed cairn, with the build tree nowhere on PATH: its tasks still
# find the stage programs (cairn exec puts its own folder first).
clean_path=/usr/local/bin:/usr/bin:/bin
cat >stages.ini <<'EOF'
[stage help]
array = 2
command = cairn-dataset --help > ${out}/help.txt
    command -v cairn-dataset > ${out}/which.txt
EOF
PATH=$clean_path "$P/bin/cairn" run stages.ini --run-dir "$T/r1" >out.txt 2>&1
check_eq "installed: a run whose tasks call a stage program: exit 0" "$?" 0
check_eq "installed: ... the one installed beside cairn" "$(cat "$T/r1/stages/help/1/out/which.txt")" "$P/bin/cairn-dataset"
check_grep "installed: ... and it ran" "usage: cairn-dataset" "$T/r1/stages/help/0/out/help.txt"
PATH=$clean_path "$P/bin/cairn" run "$P/share/cairn/configs/demo.ini" --run-dir "$T/rdemo" >out.txt 2>&1
check_eq "installed: the example demo spec runs" "$?" 0
check_grep "installed: ... all done" "run demo: done \(9 of 9 tasks done\)" out.txt

# The completion, as bash calls it.
mkdir -p runs && cp -r "$T/rdemo" runs/demo-1
cp "$P/share/cairn/configs/demo.ini" .
complete_line() { # words...: what _cairn offers for the last one
	bash -c 'source "$1"; shift; PATH="$0:$PATH"; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		case ${COMP_WORDS[0]} in cairn) _cairn ;; *) _cairn_prog ;; esac; printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' \
		"$P/bin" "$P/share/bash-completion/completions/cairn" "$@"
}
check_eq "completion: commands" "$(complete_line cairn re)" "resume "
check_eq "completion: options from the command's --help" "$(complete_line cairn run --dr)" "--dry-run "
check_eq "completion: every option of why" "$(complete_line cairn why --)" "--all --lines "
check_eq "completion: a spec for run" "$(complete_line cairn run de)" "demo.ini "
check_eq "completion: --until's stages from run's spec" "$(complete_line cairn run demo.ini --until c)" "count "
check_eq "completion: run folders" "$(complete_line cairn status runs/d)" "runs/demo-1 "
check_eq "completion: a stage, or its tasks" "$(complete_line cairn why runs/demo-1 co)" "count count/ "
check_eq "completion: the tasks of a stage (array = a param: the run's task folders)" \
	"$(complete_line cairn logs runs/demo-1 count/)" "count/ count/0 count/1 count/2 count/3 "
check_eq "completion: without a run, the newest in runs/" "$(complete_line cairn why me)" "merge merge/ "
check_eq "completion: --rerun, after a comma" "$(complete_line cairn resume runs/demo-1 --rerun count/1,sp)" \
	"count/1,split count/1,split/ "
check_eq "completion: --executor" "$(complete_line cairn resume runs/demo-1 --executor s)" "slurm "
check_eq "completion: a stage program's subcommands" "$(complete_line cairn-nas pro)" "propose "
check_eq "completion: ... a subcommand's options" "$(complete_line cairn-dataset info --j)" "--json "
check_eq "completion: ... a program's options" "$(complete_line cairn-fetch --zo)" "--zoom "
check "completion: bash-completion finds it under each program's name" \
	test -L "$P/share/bash-completion/completions/cairn-fetch"

check_rc "uninstall: exit 0" 0 bash "$ROOT/scripts/install.sh" "$CAIRN_BIN" "$P" --uninstall
check_eq "uninstall: nothing of cairn left" "$(find "$P" -type f -o -type l | wc -l)" 0
exit $failed
