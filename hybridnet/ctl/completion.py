"""``completion bash|zsh``: a shell completion script made from the command line's own
definition (hybridnet.ctl.arguments), so it offers exactly the commands, flags and choices
that exist. zsh runs the same function through its bash compatibility layer
(``bashcompinit``)."""

from __future__ import annotations

import argparse
import shlex

from hybridnet.ctl.context import Context

FILE_OPTIONS = ("--kubeconfig", "--store", "--socket")
COMMANDS = ("hybridnet-ctl", "kubectl-hybridnet")


def _walk(
    parser: argparse.ArgumentParser, path: str, words: dict[str, list[str]],
    values: dict[str, list[str]],
) -> None:  # fmt: skip
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.append(name)
                _walk(child, f"{path} {name}".strip(), words, values)
            continue
        found.extend(o for o in action.option_strings if o.startswith("--") or len(o) == 2)
        if action.option_strings and action.nargs != 0:
            choices = getattr(action.type, "choices", None) or action.choices or []
            for option in action.option_strings:
                values[option] = [str(c) for c in choices]
    words[path] = found


def _case(entries: dict[str, list[str]]) -> str:
    quote = shlex.quote
    return "\n".join(
        f"    {quote(key) if key else EMPTY}) echo {quote(' '.join(value))} ;;"
        for key, value in entries.items()
    )


EMPTY = "''"
BASH_TEMPLATE = """# hybridnet-ctl completion for bash: source it, or put it in
# /etc/bash_completion.d/hybridnet-ctl
_hybridnet_ctl_words() {
  case "$1" in
@WORDS@
  esac
}
_hybridnet_ctl_values() {
  case "$1" in
@VALUES@
    *) echo __none__ ;;
  esac
}
_hybridnet_ctl() {
  local cur="${COMP_WORDS[COMP_CWORD]}" path="" word i skip="" offered
  local takes=" @TAKES@ "
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="${COMP_WORDS[i]}"
    if [[ -n "$skip" ]]; then skip=""; continue; fi
    if [[ "$word" == -* ]]; then
      [[ "$takes" == *" $word "* ]] && skip=1
      continue
    fi
    case " $(_hybridnet_ctl_words "$path") " in
      *" $word "*) path="${path:+$path }$word" ;;
    esac
  done
  if [[ -n "$skip" ]]; then
    offered="$(_hybridnet_ctl_values "${COMP_WORDS[COMP_CWORD - 1]}")"
    case "$offered" in
      __files__) COMPREPLY=($(compgen -f -- "$cur")) ;;
      __none__) COMPREPLY=() ;;
      *) COMPREPLY=($(compgen -W "$offered" -- "$cur")) ;;
    esac
    return 0
  fi
  COMPREPLY=($(compgen -W "$(_hybridnet_ctl_words "$path")" -- "$cur"))
}
complete -F _hybridnet_ctl @COMMANDS@
"""


def bash_script(parser: argparse.ArgumentParser) -> str:
    words: dict[str, list[str]] = {}
    values: dict[str, list[str]] = {}
    _walk(parser, "", words, values)
    choices = {o: v for o, v in values.items() if v} | {o: ["__files__"] for o in FILE_OPTIONS}
    return (
        BASH_TEMPLATE.replace("@WORDS@", _case(words))
        .replace("@VALUES@", _case(choices))
        .replace("@TAKES@", " ".join(sorted(values)))
        .replace("@COMMANDS@", " ".join(COMMANDS))
    )


def zsh_script(parser: argparse.ArgumentParser) -> str:
    return (
        "#compdef " + " ".join(COMMANDS) + "\n"
        "# hybridnet-ctl completion for zsh: source it from ~/.zshrc\n"
        "autoload -U +X compinit && compinit\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(parser)
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    from hybridnet.ctl.arguments import build_parser  # noqa: PLC0415 - it imports this module

    parser = build_parser()
    ctx.stdout.write(bash_script(parser) if args.shell == "bash" else zsh_script(parser))
    return 0
