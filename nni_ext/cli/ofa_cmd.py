"""``nni-ext ofa``: after an OFA search, export picked sub-networks and fine-tune them from inherited weights.

``export`` writes, per architecture, a folder with NSGANetV2's ``net.subnet``, ``net.config`` and
``net.inherited`` (weights taken from the supernet); ``finetune`` trains such a network on a dataset
with the shared training loop (``torchrun`` DDP, AMP and channels-last on CUDA, resumable checkpoints)::

    nni-ext select EXP -n 3 -o picks                      # pick_01.json ... from the front
    nni-ext ofa export picks --supernet ofa_mbv3_d234_e346_k357_w1.2 --out runs/export
    nni-ext ofa export --experiment EXP -n 3 --supernet ... --out runs/export      # the same in one step
    nni-ext ofa finetune --config runs/export/pick_01/net.config --weights runs/export/pick_01/net.inherited \\
        --data cifar10:data/cifar --output runs/finetune/pick_01
    torchrun --nproc_per_node 8 -m nni_ext ofa finetune --config ... --sync-bn   # DDP, one GPU per process

Under torchrun, ``--batch-size`` is the global batch; what equals a single-process run is documented in
:func:`nni_ext.ofa2.finetune.finetune`.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ofa", help="export picked OFA sub-networks (net.subnet/config/inherited) and fine-tune them",
                       description=__doc__.splitlines()[0])
    ofa = p.add_subparsers(dest="ofa_command", required=True, metavar="{export,finetune}")
    e = ofa.add_parser("export", help="write net.subnet, net.config and net.inherited of picked architectures",
                       description="For each architecture, a folder OUT/<name>/ with net.subnet (NSGANetV2's OFA "
                                   "dict), net.config (the sub-network's full config) and net.inherited "
                                   "({'state_dict'} taken from the supernet).")
    e.add_argument("sources", nargs="*", metavar="FILE",
                   help="pick_NN.json files of `nni-ext select` (or its output folder), architecture JSON files of "
                        "the ofa-mbv3 space (NNI labels, OFA dicts, net.subnet) or OFA²'s result.json")
    e.add_argument("--experiment", default=None, help="pick from this experiment's front instead (id or directory)")
    e.add_argument("-n", type=int, default=3, help="with --experiment: how many to pick (default 3)")
    e.add_argument("--prefer", default=None, metavar="KEY#VALUE+...", help="with --experiment: as `nni-ext select`")
    e.add_argument("--objectives", default=None, metavar="KEY:max|min,...",
                   help="with --experiment: as `nni-ext select`")
    e.add_argument("--supernet", required=True, help="OFA MobileNetV3 w1.2 supernet weights the search used")
    e.add_argument("--out", required=True, help="output folder (one sub-folder per architecture)")
    e.set_defaults(func=run_export)

    f = ofa.add_parser("finetune", help="fine-tune an exported network from its inherited weights",
                       description="Train net.config + net.inherited on --data with NSGANetV2's fine-tuning recipe "
                                   "(SGD momentum 0.9 Nesterov, cosine, lr 0.01, weight decay 4e-5, batch 96, "
                                   "150 epochs); writes OUTPUT/checkpoint.pth, and net.config + net.finetuned at "
                                   "the end.")
    g = f.add_argument_group("network and data")
    g.add_argument("--config", required=True, help="net.config of `nni-ext ofa export`")
    g.add_argument("--weights", default=None, help="initial weights (default: net.inherited beside --config)")
    g.add_argument("--data", required=True, help="ImageNet-layout root with train/ and val/ (the digits of `nni-ext "
                                                "data digits` too), or cifar10:ROOT / cifar100:ROOT (torchvision's "
                                                "files, test split for evaluation)")
    g.add_argument("--resolution", type=int, default=None,
                   help="input size (default: the export's resolution, net.config or net.subnet)")
    g.add_argument("--reset-classifier", choices=["always", "auto", "never"], default="auto",
                   help="new classifier for the data's classes: auto (when the class count differs; default), "
                        "always (NSGANetV2), never")
    g.add_argument("--dropout", type=float, default=0.2, help="dropout of a reset classifier (default 0.2)")
    g.add_argument("--calib-images", type=int, default=2000,
                   help="recalibrate BN on N training images before training (OFA, NSGANetV2: 2000; 0: keep the "
                        "statistics sliced from the supernet)")
    g.add_argument("--backend", choices=["auto", "dali", "torchvision"], default="auto",
                   help="image loader for folders (auto: DALI when installed)")
    g.add_argument("--workers", type=int, default=4, help="loader worker processes/threads (default 4)")
    g.add_argument("--min-area", type=float, default=0.08, help="smallest random-resized-crop area (default 0.08)")
    g.add_argument("--val-split", default="val", help="split evaluated during training (default val)")
    r = f.add_argument_group("recipe (NSGANetV2's fine-tuning defaults)")
    r.add_argument("--steps", type=int, default=None, help="iterations (default 150 epochs)")
    r.add_argument("--epochs", type=int, default=None, help="length in epochs instead of --steps")
    r.add_argument("--batch-size", type=int, default=96, help="global batch over all processes (default 96)")
    r.add_argument("--lr", type=float, default=0.01, help="initial LR, cosine-decayed per iteration (default 0.01)")
    r.add_argument("--momentum", type=float, default=0.9)
    r.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=True,
                   help="Nesterov momentum (default on, as OFA's SGD)")
    r.add_argument("--weight-decay", type=float, default=4e-5, help="on conv/linear weights (default 4e-5)")
    r.add_argument("--label-smoothing", type=float, default=0.0)
    r.add_argument("--sam-rho", type=float, default=None, metavar="RHO",
                   help="sharpness-aware minimisation (adaptive SAM around the SGD step; FlatNAS uses 2.0): flatter "
                        "minima, lower weight-noise `robustness`, twice the compute per step (default: plain SGD)")
    r.add_argument("--seed", type=int, default=0)
    o = f.add_argument_group("run")
    o.add_argument("--output", default=None, help="folder of checkpoint.pth (default runs/ofa-finetune; "
                                                  "$NNI_OUTPUT_DIR under nnictl)")
    o.add_argument("--save-every", type=int, default=1000, help="checkpoint every N steps (and at the end)")
    o.add_argument("--resume", nargs="?", const="", default=None, metavar="CKPT",
                   help="continue OUTPUT/checkpoint.pth (or CKPT) with the same data stream")
    o.add_argument("--overwrite", action="store_true", help="start over even if OUTPUT/checkpoint.pth exists")
    o.add_argument("--stop-at", type=int, default=None, help="stop (with a checkpoint) at this step of the schedule")
    o.add_argument("--eval-every", type=int, default=None, help="evaluate every N steps (default: each epoch)")
    o.add_argument("--val-per-class", type=int, default=None,
                   help="evaluate on the first N images of each class (a fixed, class-balanced subset)")
    o.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (torchrun: LOCAL_RANK's GPU)")
    o.add_argument("--sync-bn", action="store_true",
                   help="under torchrun: BatchNorm over the global batch (SyncBatchNorm), so the run equals a "
                        "single-process run with the same --batch-size to float tolerance (with --dropout 0)")
    o.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="float16 autocast + GradScaler (default: on CUDA)")
    o.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format (default: on CUDA)")
    o.add_argument("--quiet", action="store_true", help="no progress bar or evaluation lines")
    f.set_defaults(func=run_finetune)


def _experiment_picks(args: argparse.Namespace) -> list[Any]:
    from ..errors import NniExtError
    from ..ofa2.export import Pick, arch_from_json
    from ..report import analyse, choose_objectives, select_points
    from ..results import load_experiment

    if args.n < 1:
        raise NniExtError(f"-n {args.n}: pick at least one")
    results = load_experiment(args.experiment)
    a = analyse(results, choose_objectives(results, args.objectives))
    picks = []
    for rank, i in enumerate(select_points(a, args.n, args.prefer), 1):
        trial = a.trials[i]
        picks.append(Pick(f"pick_{rank:02d}", arch_from_json(trial.parameters, f"trial {trial.trial_id}"),
                          f"{results.id}/{trial.trial_id}"))
    return picks


def run_export(args: argparse.Namespace) -> int:
    from ..errors import NniExtError
    from ..ofa2.export import export_architectures, read_architectures
    from .common import check_output_path

    if bool(args.sources) == bool(args.experiment):
        raise NniExtError("give architecture files (pick_NN.json, a `nni-ext select` folder, arch JSON) or "
                          "--experiment ID, one of the two")
    out = check_output_path(args.out, "--out", directory=True)
    picks = _experiment_picks(args) if args.experiment else read_architectures(args.sources)
    folders = export_architectures(args.supernet, picks, out)
    for pick, folder in zip(picks, folders):
        print(f"{pick.name}: r={pick.arch['r']} from {pick.source} -> {folder}/")
    print(f"exported {len(folders)} network{'s' * (len(folders) != 1)} to {out}/ (net.subnet, net.config, "
          "net.inherited)")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from ..errors import NniExtError
    from ..ofa2.export import WEIGHTS_FILE
    from ..ofa2.finetune import finetune, finetune_recipe
    from ..trainers.train_loop import RunConfig

    output = args.output or os.environ.get("NNI_OUTPUT_DIR") or "runs/ofa-finetune"
    weights = args.weights or Path(args.config).with_name(WEIGHTS_FILE)
    if not 0 < args.min_area <= 1:
        raise NniExtError(f"--min-area {args.min_area} must be in (0, 1]")
    cfg = RunConfig(data=args.data, output=output, backend=args.backend, workers=args.workers, min_area=args.min_area,
                    device=args.device, resume=False if args.resume is None else (args.resume or True),
                    overwrite=args.overwrite, val_split=args.val_split, val_per_class=args.val_per_class)
    recipe = finetune_recipe(lr=args.lr, weight_decay=args.weight_decay, momentum=args.momentum,
                             nesterov=args.nesterov, batch_size=args.batch_size, label_smoothing=args.label_smoothing,
                             sam_rho=args.sam_rho,
                             steps=args.steps, epochs=args.epochs, save_every=args.save_every,
                             eval_every=args.eval_every, stop_at=args.stop_at, amp=args.amp,
                             channels_last=args.channels_last, seed=args.seed, quiet=args.quiet)
    result = finetune(cfg, recipe, config=args.config, weights=weights, resolution=args.resolution,
                      reset=args.reset_classifier, dropout=args.dropout, calib_images=args.calib_images,
                      sync_bn=args.sync_bn)
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 speaks
        return 0
    val = result.val or {}
    status = "done" if result.finished else "stopped"
    top1 = f", val top-1 {val['top1']:.4f} top-5 {val['top5']:.4f}" if val else ""
    extra = f"; {Path(output) / 'net.finetuned'}" if result.finished else ""
    print(f"finetune {status} at step {result.step}/{result.total_steps}{top1}, {result.images_per_second:.0f} "
          f"images/s; checkpoint {result.checkpoint}{extra}")
    return 0
