"""What the command groups share: default addresses, Ray start-up, the client's connection options, the
console, and a local deployment for the commands that start one."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os

from specdec.renamed import REQUEST_FIELDS as RENAMED_REQUEST_FIELDS
from specdec.renamed import current_names

DEFAULT_ADDRESS = os.environ.get("SPECDEC_ADDRESS", "127.0.0.1:50051")
DEFAULT_HTTP_ADDRESS = os.environ.get("SPECDEC_HTTP_ADDRESS", "http://127.0.0.1:8000")


class RenamedOption(argparse.Action):
    """An option's deprecated spelling (`--num-drafts`): sets the option it was renamed to, with a FutureWarning."""

    def __call__(self, parser, namespace, values, option_string=None):
        old = option_string.lstrip("-").replace("-", "_")
        setattr(namespace, self.dest, current_names({old: values}, RENAMED_REQUEST_FIELDS)[self.dest])


def add_renamed_option(parser: argparse.ArgumentParser, old: str, new: str, **kwargs) -> None:
    """`old`, hidden from the help, as the deprecated spelling of the option `new` (already added)."""
    parser.add_argument(old, dest=new.lstrip("-").replace("-", "_"), action=RenamedOption, help=argparse.SUPPRESS,
                        **kwargs)


def init_ray(address: str | None, quiet: bool) -> None:
    import ray

    if ray.is_initialized():  # a second deployment of this process (bench --compare-hf --drafts)
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=not quiet)


LAUNCHERS = ("auto", "ray", "processes")


def launcher_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--launcher", choices=LAUNCHERS, default="auto",
                        help="ray: the services and the orchestrator as Ray actors; processes: as plain child "
                             "processes on this machine, without Ray (see `specdec service`); auto (default): ray "
                             "where it is installed, else processes")


def resolved_launcher(launcher: str) -> str:
    if launcher != "auto":
        return launcher
    return "ray" if importlib.util.find_spec("ray") is not None else "processes"


def start_deployment(config, launcher: str, address: str | None = None, detached: bool = False, quiet: bool = True):
    """The deployment of `config`, started by `launcher` (a `Deployment` on Ray, or a `ProcessDeployment`)."""
    if resolved_launcher(launcher) == "processes":
        from specdec.orchestrator.serving.processes import deploy_processes

        return deploy_processes(config)
    if importlib.util.find_spec("ray") is None:
        raise ValueError("--launcher ray: Ray is not installed here (pip install 'specdec[ray]'), or use "
                         "--launcher processes")
    from specdec.orchestrator.serving.launch import deploy

    init_ray(address, quiet)
    return deploy(config, detached=detached)


def connection(args: argparse.Namespace) -> dict:
    """Client keyword arguments for TLS and the bearer token (from --token or $SPECDEC_TOKEN)."""
    return {"tls_ca": args.tls_ca, "token": args.token or os.environ.get("SPECDEC_TOKEN") or None,
            "cert": args.tls_cert, "key": args.tls_key}


def connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-ca", help="PEM CA of the orchestrator's certificate: connect over TLS")
    parser.add_argument("--tls-cert", help="this client's PEM certificate, for mutual TLS")
    parser.add_argument("--tls-key", help="this client's PEM private key, for mutual TLS")
    parser.add_argument("--token", help="bearer token of the client API (default: $SPECDEC_TOKEN)")


def deployment_args(parser: argparse.ArgumentParser) -> None:
    """--address and --config: which cluster, and which deployment on it."""
    parser.add_argument("--address", default="auto", help="Ray cluster address (default: auto, the running one)")
    parser.add_argument("--config", help="serve config naming the orchestrator (default: the demo config)")


def make_console():
    from rich.console import Console

    console = Console()
    console.width = max(console.width, 120)  # tables stay readable when piped to a log
    return console


@contextlib.contextmanager
def local_deployment(config_path: str | None, console, launcher: str = "auto", draft: str = ""):
    """The whole deployment on this machine (a local Ray instance, or plain processes), the orchestrator on
    a free port; yields its address. `draft`: another draft than the config's (its kind: auto)."""
    from specdec.config import ServeConfig

    config = ServeConfig.load(config_path).with_overrides(orchestrator={"port": 0})
    if draft:
        config = config.with_overrides(draft={"model": draft, "kind": "auto"})
    on = "Ray" if resolved_launcher(launcher) == "ray" else "plain processes"
    with console.status(f"starting the draft and target services and the orchestrator on {on}..."):
        deployment = start_deployment(config, launcher)
    console.print(f"orchestrator at {deployment.address}; drafts at {', '.join(deployment.draft_addresses)}, "
                  f"targets at {', '.join(deployment.target_addresses)} "
                  f"({deployment.layout.describe()})")
    try:
        yield deployment.address
    finally:
        deployment.stop()
