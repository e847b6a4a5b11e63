# zsh_complete.zsh - type a command line into an interactive zsh (in a zpty),
# press TAB twice, wait until EXPECTED shows up on the screen, and print the
# screen, escape sequences removed (exit 1 if it never shows). Used by
# test_cli_docs.py to test the zsh completion for real.
#
#   zsh -f zsh_complete.zsh COMPLETION_DIR CHCPCTL_DIR 'chcpctl list --s' EXPECTED
#
# zle shows no completion list while more input is pending, so nothing more is
# typed until EXPECTED appeared; then ^U and a command printing a marker the
# shell computes (DONE_42; its echo "$((40+2))" never matches) end cleanly.
zmodload zsh/zpty || exit 1
zpty z "TERM=dumb zsh -f -i"
out=''
read_until() {
    local chunk deadline=$(( SECONDS + 60 ))
    while (( SECONDS < deadline )); do
        if zpty -r -t z chunk; then
            out+=$chunk
            [[ $out == *$1* ]] && return 0
        else
            sleep 0.05
        fi
    done
    return 1
}
zpty -w z "PS1='%% '; fpath=($1 \$fpath); autoload -Uz compinit; compinit -u -D; PATH=$2:\$PATH; setopt nobeep; print READY_\$((1+1))"
read_until READY_2 || { print -r -- "setup timed out: $out"; exit 1; }
out=''
zpty -n -w z "$3"$'\t\t'
read_until "$4"
found=$?
zpty -n -w z $'\x15print DONE_$((40+2))\n'
read_until DONE_42
print -r -- "$out" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' | tr '\r' '\n'
zpty -d z
exit $found
