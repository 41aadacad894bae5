"""Command line of the sandbox: ``python -m airflow_provider_hitpaw.sandbox``.

API keys can come from ``--api-key`` or, to keep them off the command line, from the environment:
``HITPAW_SANDBOX_API_KEYS`` (comma separated, each starting with ``--coins``) or
``HITPAW_SANDBOX_API_KEYS_JSON`` (a JSON object key -> starting coins).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from airflow_provider_hitpaw.sandbox.config import (
    DEFAULT_PRICES,
    DEFAULT_RESULT_SECONDS,
    ERROR_SHAPES,
    FAULT_ENDPOINTS,
    FaultConfig,
    SandboxConfig,
    is_loopback_host,
)

KEYS_ENV = "HITPAW_SANDBOX_API_KEYS"
KEYS_JSON_ENV = "HITPAW_SANDBOX_API_KEYS_JSON"
READY_LINE = "HitPaw sandbox listening on {url}"

log = logging.getLogger("airflow_provider_hitpaw.sandbox")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_hitpaw.sandbox",
        description="A local HitPaw API for tests, demos and benchmarks: real Pillow enhancement, "
        "a coin ledger and fault injection.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add("--port", type=int, default=8899, help="port to bind; 0 picks a free one (default 8899)")
    add(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help=f"a valid API key (repeatable); see also ${KEYS_ENV}",
    )
    add("--coins", type=int, default=1000, help="starting coins of each key (default 1000)")
    add("--job-seconds", type=float, default=2.0, help="seconds from submission to COMPLETED (default 2)")
    add(
        "--result-seconds",
        type=float,
        default=DEFAULT_RESULT_SECONDS,
        help="seconds a result stays downloadable; then res_url answers 404 and the file is deleted "
        "(default 691200: 8 days, like HitPaw)",
    )
    add("--price", action="append", default=[], metavar="MODEL=COINS", help="coins charged for a model")
    add("--error-shape", choices=ERROR_SHAPES, default="error_code", help="error body shape")
    add("--workers", type=int, default=2, help="threads doing the image work (default 2)")
    add("--fetch-timeout", type=float, default=10.0, help="seconds allowed to download an img_url")
    add("--max-fetch-bytes", type=int, default=64 * 1024 * 1024, help="largest img_url download")
    add(
        "--max-work-megapixels",
        type=float,
        default=200.0,
        help="largest result actually computed; bigger jobs end in ERROR",
    )
    add("--public-base-url", help="base of the res_url links (default: the bound address)")
    add("--allow-remote", action="store_true", help="allow binding an address other than loopback")
    add(
        "--admin",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve /admin/ (default: only on loopback)",
    )
    add("--access-log", action="store_true", help="log each request (never the API key)")
    add("--ready-file", type=Path, help="write the base URL to this file once listening")
    add("--log-level", default="WARNING", help="logging level (default WARNING)")
    faults = parser.add_argument_group("fault injection (probabilities in [0, 1])")
    fadd = faults.add_argument
    fadd("--error-5xx", type=float, default=0.0, help="HTML 500/502/503, request not processed")
    fadd("--rate-429", type=float, default=0.0, help="HTTP 429 with Retry-After, request not processed")
    fadd("--drop", type=float, default=0.0, help="close the connection, request not processed")
    fadd("--drop-after", type=float, default=0.0, help="process, then close the connection")
    fadd("--slow", type=float, default=0.0, help="process, then wait --slow-seconds before replying")
    fadd("--slow-seconds", type=float, default=35.0, help="delay of a slow reply (default 35)")
    fadd("--fail-job", type=float, default=0.0, help="the job ends in ERROR (charged all the same)")
    fadd("--rate-limit-rps", type=float, default=None, help="requests per second allowed on /api/*")
    fadd("--rate-limit-submissions-only", action="store_true",
         help="status requests do not count against --rate-limit-rps")
    fadd(
        "--fault-endpoints",
        default=",".join(sorted(FAULT_ENDPOINTS)),
        help="endpoints the probabilities apply to (default submit,status,result)",
    )
    fadd("--seed", type=int, default=None, help="seed of the fault rolls")
    return parser


def _keys_from_env(coins: int) -> dict[str, int]:
    keys: dict[str, int] = {}
    for key in os.environ.get(KEYS_ENV, "").split(","):
        if key.strip():
            keys[key.strip()] = coins
    raw_json = os.environ.get(KEYS_JSON_ENV)
    if raw_json:
        try:
            mapping = json.loads(raw_json)
        except ValueError:
            raise ValueError(f"${KEYS_JSON_ENV} is not valid JSON") from None
        if not isinstance(mapping, dict):
            raise ValueError(f"${KEYS_JSON_ENV} must be a JSON object of key -> coins")
        keys.update({str(k): int(v) for k, v in mapping.items()})
    return keys


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """Build the configuration from parsed arguments and the environment.

    :raises ValueError: for an invalid value.
    """
    keys = _keys_from_env(args.coins)
    keys.update(dict.fromkeys(args.api_key, args.coins))
    prices = {}
    for item in args.price:
        model, sep, coins = item.partition("=")
        if not sep or not (coins.strip().isascii() and coins.strip().isdigit()):
            raise ValueError(f"--price takes MODEL=COINS, got {item!r}")
        prices[model.strip()] = int(coins)
    faults = FaultConfig(
        error_5xx=args.error_5xx,
        rate_429=args.rate_429,
        drop=args.drop,
        drop_after=args.drop_after,
        slow=args.slow,
        slow_seconds=args.slow_seconds,
        fail_job=args.fail_job,
        rate_limit_rps=args.rate_limit_rps,
        rate_limit_status=not args.rate_limit_submissions_only,
        fault_endpoints=frozenset(e.strip() for e in args.fault_endpoints.split(",") if e.strip()),
        seed=args.seed,
    )
    return SandboxConfig(
        host=args.host,
        port=args.port,
        api_keys=keys,
        coins=args.coins,
        job_seconds=args.job_seconds,
        result_seconds=args.result_seconds,
        prices=prices,
        error_shape=args.error_shape,
        faults=faults,
        allow_remote=args.allow_remote,
        admin=args.admin,
        workers=args.workers,
        fetch_timeout=args.fetch_timeout,
        max_fetch_bytes=args.max_fetch_bytes,
        max_work_megapixels=args.max_work_megapixels,
        public_base_url=args.public_base_url,
        access_log=args.access_log,
    )


def config_to_argv(config: SandboxConfig) -> list[str]:
    """Command-line arguments for ``config``, API keys excepted (pass them with :func:`keys_env`)."""
    f = config.faults
    argv = [
        "--host", config.host,
        "--port", str(config.port),
        "--coins", str(config.coins),
        "--job-seconds", repr(float(config.job_seconds)),
        "--result-seconds", repr(float(config.result_seconds)),
        "--error-shape", config.error_shape,
        "--workers", str(config.workers),
        "--fetch-timeout", repr(float(config.fetch_timeout)),
        "--max-fetch-bytes", str(config.max_fetch_bytes),
        "--max-work-megapixels", repr(float(config.max_work_megapixels)),
        "--error-5xx", repr(f.error_5xx),
        "--rate-429", repr(f.rate_429),
        "--drop", repr(f.drop),
        "--drop-after", repr(f.drop_after),
        "--slow", repr(f.slow),
        "--slow-seconds", repr(float(f.slow_seconds)),
        "--fail-job", repr(f.fail_job),
        "--fault-endpoints", ",".join(sorted(f.fault_endpoints)),
    ]  # fmt: skip
    argv += [
        f"--price={model}={coins}"
        for model, coins in config.prices.items()
        if DEFAULT_PRICES.get(model) != coins
    ]
    if f.rate_limit_rps is not None:
        argv += ["--rate-limit-rps", repr(float(f.rate_limit_rps))]
    if not f.rate_limit_status:
        argv += ["--rate-limit-submissions-only"]
    if f.seed is not None:
        argv += ["--seed", str(f.seed)]
    if config.public_base_url:
        argv += ["--public-base-url", config.public_base_url]
    if config.allow_remote:
        argv.append("--allow-remote")
    if config.admin is not None:
        argv.append("--admin" if config.admin else "--no-admin")
    if config.access_log:
        argv.append("--access-log")
    return argv


def keys_env(config: SandboxConfig) -> dict[str, str]:
    """The environment variable that hands ``config``'s keys to a sandbox process."""
    return {KEYS_JSON_ENV: json.dumps(dict(config.api_keys))}  # type: ignore[arg-type]


def _write_ready_file(path: Path, url: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(url + "\n", encoding="utf-8")
    os.replace(partial, path)


async def serve(config: SandboxConfig, ready_file: Path | None = None) -> None:
    """Run a sandbox until SIGTERM or SIGINT.

    :param config: its settings.
    :param ready_file: a file to write the base URL to once it is listening.
    """
    from airflow_provider_hitpaw.sandbox.server import SandboxServer

    server = SandboxServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        print(READY_LINE.format(url=server.listen_url), flush=True)
        if ready_file is not None:
            _write_ready_file(ready_file, server.base_url)
        await stop.wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m airflow_provider_hitpaw.sandbox``. Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    if not is_loopback_host(config.host):
        print(
            f"WARNING: the HitPaw sandbox is listening on {config.host}, beyond this machine. It fetches "
            "any URL it is given; keep it on a trusted network.",
            file=sys.stderr,
            flush=True,
        )
    if not config.api_keys:
        print(
            "WARNING: no API key given (--api-key or $HITPAW_SANDBOX_API_KEYS); every API call will be "
            "refused until one is added with POST /admin/keys.",
            file=sys.stderr,
            flush=True,
        )
    from airflow_provider_hitpaw.sandbox.imaging import PillowMissingError

    try:
        asyncio.run(serve(config, args.ready_file))
    except PillowMissingError as err:
        print(err, file=sys.stderr)
        return 2
    except OSError as err:
        print(f"HitPaw sandbox could not start: {err}", file=sys.stderr)
        return 1
    return 0
