"""`guardrail` command line: serve, subscriber, model prepare, engine, pubsub setup, db upgrade/downgrade."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

if TYPE_CHECKING:
    from guardrail.config import Settings
    from inference.engine_config import EngineConfig


def _settings() -> Settings:
    from guardrail.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"  GUARDRAIL_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" if e["loc"]
                 else f"  {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        sys.exit("invalid configuration:\n" + "\n".join(lines))


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def engine_config(settings: Settings, model_dir: Path, name: str) -> EngineConfig:
    from inference.engine_config import EngineConfig

    return EngineConfig(model=str(model_dir), served_model_name=name, max_num_seqs=settings.max_num_seqs,
                        max_model_len=settings.max_model_len, dtype=settings.engine_dtype)


def local_model(settings: Settings) -> tuple[Path, str, str | None]:
    """The model folder the local engine serves (GUARDRAIL_MODEL_DIR, or the prepared model), its served
    name, and its revision: the start of its weights' hash from the folder's manifest (None without one).

    The prepared model is the project's fine-tuned judge unless GUARDRAIL_MODEL_VARIANT=base.
    """
    from inference.model_prep import ModelPrepError, prepare_model, read_manifest

    if settings.model_dir is not None:
        folder = Path(settings.model_dir).expanduser()
        if not (folder / "config.json").exists():
            sys.exit(f"GUARDRAIL_MODEL_DIR={folder} is not a Hugging Face model folder (no config.json)")
        manifest = read_manifest(folder) or {}
        return folder, str(manifest.get("name") or folder.name), model_revision(manifest)
    try:
        prepared = prepare_model(progress=_say)
    except ModelPrepError as exc:
        sys.exit(f"model prepare failed: {exc}")
    return prepared.path, prepared.name, model_revision(prepared.manifest)


def model_revision(manifest: dict[str, object]) -> str | None:
    """`sha256:<first 16 hex digits>` of the served weights, as the model folder's manifest records them."""
    digest = manifest.get("weights_sha256")
    return f"sha256:{digest[:16]}" if isinstance(digest, str) and digest else None


def served_revision(revision: str | None, config: EngineConfig) -> str | None:
    """The revision a judge of the local engine puts in its verdict cache keys: the weights' revision and the
    dtype the engine computes in (`sha256:…+float32`), since bf16 and fp32 serving give slightly different
    scores for the same weights. None when the weights have no revision."""
    return f"{revision}+{config.resolved_dtype('cpu')}" if revision else None


def cmd_model_prepare(args: argparse.Namespace) -> None:
    """Build the fine-tuned judge (default) or, with --base / GUARDRAIL_MODEL_VARIANT=base, the untuned base."""
    from inference.model_prep import ModelPrepError, prepare_model

    try:
        m = prepare_model("base" if args.base else args.variant, force=args.force, progress=_say)
    except ModelPrepError as exc:
        sys.exit(f"model prepare failed: {exc}")
    _say(f"model prepare: serving name {m.name}")
    print(m.path)


def cmd_engine(args: argparse.Namespace) -> None:
    """Run only the local vLLM engine in the foreground (for benchmarks and debugging)."""
    import time

    from inference.launcher import LocalEngine

    settings = _settings()
    folder, name, revision = local_model(settings)
    config = engine_config(settings, folder, name)
    _say(f"engine: serving {name} (a judge pointed here should set "
         f"GUARDRAIL_MODEL_REVISION={served_revision(revision, config) or ''})")
    eng = LocalEngine(config, port=args.port,
                      log_path=settings.data_dir / "engine.log", progress=_say)
    try:
        eng.start(settings.engine_start_timeout_s)
        print(eng.url, flush=True)
        while eng.proc is not None and eng.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        eng.stop()


def _exit_on_sigterm() -> None:
    """SIGTERM ends `serve` through normal unwinding, so the local engine is always stopped.

    uvicorn shuts down gracefully on SIGTERM and then re-raises the signal with the previous
    handler restored; with this handler that becomes SystemExit(0) and `finally` blocks run.
    """
    import signal

    def _handler(signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _handler)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from guardrail.app import create_app
    from inference.launcher import EngineStartError, LocalEngine

    settings = _settings()
    _exit_on_sigterm()
    if settings.role == "subscriber":  # one image, GUARDRAIL_ROLE picks the service (Cloud Run)
        cmd_subscriber(argparse.Namespace(host=args.host, port=args.port, pull=False))
        return
    engine = None
    if not settings.inference_url and settings.role in ("all", "judge"):
        folder, name, revision = local_model(settings)
        config = engine_config(settings, folder, name)
        engine = LocalEngine(config, port=settings.engine_port,
                             log_path=settings.data_dir / "engine.log", progress=_say)
        try:
            settings.inference_url = engine.start(settings.engine_start_timeout_s)
        except EngineStartError as exc:
            sys.exit(f"could not start the local engine: {exc}")
        settings.model_name = name
        settings.model_revision = settings.model_revision or served_revision(revision, config)
    try:
        _say(f"serve: http://{args.host}:{args.port} (docs at /docs, dashboard at /dashboard)")
        if settings.workers == 1:
            uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning",
                        access_log=False, timeout_graceful_shutdown=15)
        else:
            _serve_workers(settings, args)
    finally:
        if engine is not None:
            _say("serve: stopping the local engine")
            engine.stop()


def _serve_workers(settings: Settings, args: argparse.Namespace) -> None:
    """Several worker processes on one port, sharing the engine started above (and Redis, if set).

    The schema and the bootstrap tenant are prepared once here, so the workers never race on them;
    each worker rebuilds its settings from the environment, so what this process decided (the
    engine's URL and name) is handed over through it.
    """
    import asyncio
    import os

    import uvicorn

    from guardrail.app import prepare_state

    asyncio.run(prepare_state(settings))
    if settings.dashboard_session_secret is None:  # one signing key for all workers, or sessions break
        import secrets

        os.environ["GUARDRAIL_DASHBOARD_SESSION_SECRET"] = secrets.token_urlsafe(48)
    os.environ.update({"GUARDRAIL_INFERENCE_URL": settings.inference_url or "",
                       "GUARDRAIL_MODEL_NAME": settings.model_name or "",
                       "GUARDRAIL_MODEL_REVISION": settings.model_revision or "",
                       "GUARDRAIL_MIGRATE_ON_START": "false"})
    _say(f"serve: {settings.workers} worker processes")
    uvicorn.run("guardrail.app:create_app_from_env", factory=True, workers=settings.workers, host=args.host,
                port=args.port, log_level="warning", access_log=False, timeout_graceful_shutdown=15)


def cmd_subscriber(args: argparse.Namespace) -> None:
    import uvicorn

    from guardrail.subscriber.app import create_subscriber_app

    settings = _settings()
    _exit_on_sigterm()
    try:
        app = create_subscriber_app(settings, pull=args.pull)
    except ValueError as exc:
        sys.exit(f"subscriber: {exc}")
    _say(f"subscriber ({'pull' if args.pull else 'push'}): http://{args.host}:{args.port} (push endpoint /pubsub/push)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=15)


def cmd_pubsub_setup(args: argparse.Namespace) -> None:
    """Create the topic, the subscription and the dead-letter pair (emulator/local; Terraform in production)."""
    import asyncio

    from guardrail.adapters.pubsub import PubSubClient, PubSubError

    settings = _settings()
    if not settings.pubsub_topic or not settings.pubsub_subscription:
        sys.exit("pubsub setup needs GUARDRAIL_PUBSUB_TOPIC and GUARDRAIL_PUBSUB_SUBSCRIPTION")
    topic, sub = settings.pubsub_topic, settings.pubsub_subscription

    async def run() -> None:
        client = PubSubClient(project=settings.pubsub_project, emulator_host=settings.pubsub_emulator_host)
        try:
            for t in (topic, f"{topic}-dead-letter"):
                await client.ensure_topic(t)
            await client.ensure_subscription(f"{sub}-dead-letter", f"{topic}-dead-letter")
            await client.ensure_subscription(sub, topic, push_endpoint=args.push_endpoint,
                                             dead_letter_topic=f"{topic}-dead-letter",
                                             max_delivery_attempts=settings.pubsub_max_delivery_attempts)
        finally:
            await client.aclose()

    try:
        asyncio.run(run())
    except PubSubError as exc:
        sys.exit(f"pubsub setup failed: {exc}")
    _say(f"pubsub setup: topic {topic}, subscription {sub}, dead letters in {topic}-dead-letter / {sub}-dead-letter")


def cmd_db(args: argparse.Namespace) -> None:
    from guardrail.db.session import downgrade, upgrade

    url = _settings().sqlalchemy_url
    (upgrade if args.action == "upgrade" else downgrade)(url, args.revision)
    _say(f"db {args.action} to {args.revision}: done")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="guardrail", description="Japanese LLM guardrail")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the whole service on the embedded default")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.set_defaults(fn=cmd_serve)
    m = sub.add_parser("model", help="model tools")
    msub = m.add_subparsers(dest="model_cmd", required=True)
    mp = msub.add_parser("prepare", help="build the local model folder (idempotent, cached)")
    mp.add_argument("--force", action="store_true", help="rebuild even when cached")
    mp.add_argument("--base", action="store_true", help="the untuned base model (same as --variant base)")
    mp.add_argument("--variant", choices=["tuned", "base"], default=None,
                    help="tuned: base + the repository's LoRA adapter, merged (default; "
                         "GUARDRAIL_MODEL_VARIANT sets it too); base: the untuned Gemma 3 270M")
    mp.set_defaults(fn=cmd_model_prepare)
    e = sub.add_parser("engine", help="run only the local vLLM CPU engine")
    e.add_argument("--port", type=int, default=0)
    e.set_defaults(fn=cmd_engine)
    sb = sub.add_parser("subscriber", help="run the log subscriber (Pub/Sub push endpoint, or --pull)")
    sb.add_argument("--host", default="127.0.0.1")
    sb.add_argument("--port", type=int, default=8080)
    sb.add_argument("--pull", action="store_true", help="pull GUARDRAIL_PUBSUB_SUBSCRIPTION instead of serving push")
    sb.set_defaults(fn=cmd_subscriber)
    ps = sub.add_parser("pubsub", help="Pub/Sub tools")
    pssub = ps.add_subparsers(dest="pubsub_cmd", required=True)
    pss = pssub.add_parser("setup", help="create topic, subscription and dead-letter pair (emulator/local)")
    pss.add_argument("--push-endpoint", default=None, help="make the subscription push to this URL")
    pss.set_defaults(fn=cmd_pubsub_setup)
    d = sub.add_parser("db", help="schema migrations")
    d.add_argument("action", choices=["upgrade", "downgrade"])
    d.add_argument("revision", nargs="?", default=None)
    d.set_defaults(fn=cmd_db)
    args = p.parse_args(argv)
    if args.cmd == "db" and args.revision is None:
        args.revision = "head" if args.action == "upgrade" else "-1"
    args.fn(args)


if __name__ == "__main__":
    main()
