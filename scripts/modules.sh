#!/usr/bin/env bash
# The repository's Go modules: the root module (github.com/outboxkit/outbox)
# and the nested ones listed in go.work, each with the dependencies of its
# own packages only.
#
#   modules.sh list     print each module's folder, root first
#   modules.sh tidy     point every nested module at the others' folders
#                       (replace directives, so that each builds and tidies on
#                       its own as it does in go.work), then go mod tidy each
set -euo pipefail
cd "$(dirname "$0")/.."

dirs() { go work edit -json | sed -n 's/^\s*"DiskPath": "\(.*\)".*/\1/p'; }

case ${1:-list} in
list) dirs ;;
tidy)
	# path=folder of every module
	declare -A path
	for d in $(dirs); do path[$d]=$(cd "$d" && GOWORK=off go list -m); done
	for d in $(dirs); do
		[ "$d" = . ] && continue
		for o in $(dirs); do
			[ "$o" = "$d" ] && continue
			rel=$(realpath --relative-to="$d" "$o")
			case $rel in .*) ;; *) rel=./$rel ;; esac
			(cd "$d" && go mod edit -replace "${path[$o]}=$rel")
		done
	done
	for d in $(dirs); do
		echo "go mod tidy in $d"
		(cd "$d" && GOWORK=off GOFLAGS=-mod=mod go mod tidy)
		[ "$d" = . ] && continue
		# Keep the replace directives of the modules this one needs only.
		needed=$(cd "$d" && GOWORK=off go list -m all)
		for o in $(dirs); do
			[ "$o" = "$d" ] && continue
			grep -qx "${path[$o]}\( .*\)\?" <<<"$needed" || (cd "$d" && go mod edit -dropreplace "${path[$o]}")
		done
	done
	;;
*) echo "usage: modules.sh list | tidy" >&2; exit 2 ;;
esac
