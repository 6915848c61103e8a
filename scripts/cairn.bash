# Bash completion for cairn: `source scripts/cairn.bash`, or let `make
# install` put it where bash-completion finds it
# (PREFIX/share/bash-completion/completions/cairn).
#
# Completes the commands, each command's options (read from its --help, so
# they never drift), spec files for `run`, run folders (runs/* and any folder
# with a run.json), and stages and STAGE/TASK from the spec (a run folder's
# spec.ini, or the spec file `run` was given): the stage names, then the task
# numbers of a stage of at most 100 tasks (when its array is a param, from the
# run folder's task folders). It reads files only: it never asks Slurm
# anything. The stage programs (cairn-fetch, ...) get their subcommands and
# options, from their --help too.

# The spec the line is about: `run`'s .ini, else the run folder's spec.ini
# (the one named on the line, or the newest in runs/, as cairn takes it).
_cairn_spec() {
	local w newest
	for w in "${COMP_WORDS[@]:2}"; do
		if [[ ${COMP_WORDS[1]} == run && $w == *.ini && -f $w ]]; then
			printf '%s\n' "$w"
			return
		fi
		[[ -f $w/run.json ]] && { printf '%s\n' "$w/spec.ini"; return; }
	done
	newest=$(ls -1dt runs/*/ 2>/dev/null | head -n 1)
	[[ -n $newest ]] && printf '%s\n' "${newest}spec.ini"
}

# "NAME NTASKS" a line per [stage NAME] of a spec (NTASKS "?" when its
# array is not a plain number).
_cairn_stages() {
	[[ -f $1 ]] || return
	awk '
		function flush() { if (name != "") print name, n; name = "" }
		/^\[stage [A-Za-z0-9_-]+\][ \t]*$/ { flush(); name = $2; sub(/\].*/, "", name); n = 1; next }
		/^\[/ { flush(); next }
		name != "" && /^array[ \t]*=/ { v = $0; sub(/^array[ \t]*=[ \t]*/, "", v)
			sub(/[ \t]*[;#].*$/, "", v); n = (v ~ /^[0-9]+$/) ? v : "?" }
		END { flush() }' "$1"
}

# Adds to COMPREPLY what completes word: stage names (with_tasks: also
# STAGE/, then STAGE/N), each after prefix (the list before a comma).
_cairn_tasks() {
	local spec=$1 word=$2 with_tasks=$3 prefix=$4 name n i
	local -a all=()
	while read -r name n; do
		all+=("$name")
		if [[ $with_tasks == 1 ]]; then
			all+=("$name/")
			if [[ $word == "$name/"* && ! $n =~ ^[0-9]+$ ]]; then
				# array = ${param.X}: a run folder's task folders say
				n=$(ls -1 "${spec%/*}/stages/$name" 2>/dev/null | grep -c '^[0-9][0-9]*$')
			fi
			if [[ $word == "$name/"* && $n -le 100 ]]; then
				for ((i = 0; i < n; i++)); do all+=("$name/$i"); done
			fi
		fi
	done < <(_cairn_stages "$spec")
	local c
	while read -r c; do
		[[ -n $c ]] && COMPREPLY+=("$prefix$c")
	done < <(compgen -W "${all[*]}" -- "$word")
}

_cairn_runs() {
	local d
	local -a all=()
	for d in runs/*/ "$1"*/; do
		[[ -f $d/run.json ]] && all+=("${d%/}")
	done
	local c
	while read -r c; do
		[[ -n $c ]] && COMPREPLY+=("$c")
	done < <(compgen -W "${all[*]}" -- "$1" | sort -u)
}

_cairn() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
	local cmd=${COMP_WORDS[1]:-}
	COMPREPLY=()
	if ((COMP_CWORD == 1)); then
		mapfile -t COMPREPLY < <(compgen -W "run resume status runs why graph logs cancel exec --help --version" -- "$cur")
		return 0
	fi
	if [[ $cur == -* ]]; then
		local opts
		opts=$("${COMP_WORDS[0]}" "$cmd" --help 2>/dev/null | grep -o -- '--[a-z][a-z-]*' | sort -u)
		mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
		return 0
	fi
	local prefix=
	[[ $cur == *,* ]] && prefix=${cur%,*},
	case $prev in
	--executor) mapfile -t COMPREPLY < <(compgen -W "local slurm" -- "$cur") ;;
	--run-dir | --spec) mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
	--set | --jobs | --mem | --gpus | --lines | -n) ;;
	--until) _cairn_tasks "$(_cairn_spec)" "${cur##*,}" 0 "$prefix" ;;
	--rerun) _cairn_tasks "$(_cairn_spec)" "${cur##*,}" 1 "$prefix" ;;
	*)
		case $cmd in
		run) mapfile -t COMPREPLY < <(compgen -f -X '!*.ini' -- "$cur"; compgen -d -S / -- "$cur") ;;
		resume | status | graph | runs) _cairn_runs "$cur" ;;
		why | logs | cancel)
			_cairn_runs "$cur"
			_cairn_tasks "$(_cairn_spec)" "$cur" 1 "" ;;
		esac ;;
	esac
	# a folder or STAGE/ goes on: no space after it
	local c
	for c in "${COMPREPLY[@]}"; do
		[[ $c == */ ]] && { compopt -o nospace 2>/dev/null; break; }
	done
	return 0
}
complete -F _cairn cairn

# The stage programs: their subcommands and options, from their --help
# ("commands:" lines, then --words); files otherwise.
_cairn_prog() {
	local prog=${COMP_WORDS[0]} cur=${COMP_WORDS[COMP_CWORD]} help subs
	COMPREPLY=()
	help=$("$prog" --help 2>/dev/null)
	subs=$(awk '/^commands:/ { on = 1; next } on && /^$/ { exit } on && /^  [a-z]/ { print $1 }' <<<"$help")
	if ((COMP_CWORD == 1)) && [[ -n $subs && $cur != -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur")
	elif [[ $cur == -* ]]; then
		[[ -n $subs ]] && help=$("$prog" "${COMP_WORDS[1]}" --help 2>/dev/null)
		mapfile -t COMPREPLY < <(compgen -W "$(grep -o -- '--[a-z][a-z0-9-]*' <<<"$help" | sort -u)" -- "$cur")
	fi
	return 0
}
complete -o default -F _cairn_prog cairn-dataset cairn-eval cairn-fetch cairn-nas cairn-predict \
	cairn-rasterize cairn-refine cairn-synth cairn-tileset cairn-train-classifier cairn-train-unet
