"""Interventions: both engines and the patching sweep against hand-written hooks, side by side.

In one run (random-init models, ``torch.no_grad()`` where the reference runs
under it), each timing paired with its reference and the ratio taken per
repeat, then the median:

1. re-run: ``tll.intervene(resnet50, x, {"layer3": zero()})`` against a
   plain forward and against one ``log_forward_pass``;
2. replay: ``history.intervene`` from a late site of resnet50 (``layer4``,
   the stage's output, and ``layer4.0``, its first block) against a full
   plain forward (target: at most 0.3x);
3. patching sweep over resnet50's 16 bottleneck blocks and GPT-2 small's 12
   blocks (random-init ``GPT2Config()``): ``tll.patching_sweep`` against a
   loop of hand-written forward hooks doing the same patches (one clean
   forward recording every site, one corrupted forward, one patched forward
   per site; target: the loop takes at least 1.5x as long), and against
   nnsight and TorchLens 2.x doing the same where they run (report only);
4. the same sweeps over a branch of each block (resnet50's ``bn3``, GPT-2's
   ``attn``), whose patched value meets the corrupted run's residual stream,
   so replay cannot reuse the source run after the add (report only).

Every method's metrics are compared with the hooks' (largest difference
printed); the sweep line also says how many calls replay computed. The
sweeps are timed in rounds, each round timing the hooks and every method
back to back; the ratio is the median over the rounds of hooks / method,
and ``of medians`` the ratio of the median times (on a shared machine whose
speed changes within seconds the two differ). The load average is printed
at the start and the end.

Run: ``python benchmarks/interventions.py [--repeats 3] [--device cpu] [--threads 1]
[--skip-others]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import warnings

import torch
import torchvision
from torch.utils._pytree import tree_map_only

import torchlens_like as tll
from timing import paired, time_call  # noqa: E402

RESNET_BLOCKS = [f"layer{stage}.{block}" for stage, count in
                 ((1, 3), (2, 4), (3, 6), (4, 3)) for block in range(count)]
GPT2_BLOCKS = [f"transformer.h.{i}" for i in range(12)]


def resnet(device):
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval().to(device)
    clean, corrupt = (torch.rand(1, 3, 224, 224, device=device) for _ in range(2))
    return model, clean, corrupt, lambda out: float(out[0, 3] - out[0, 5])


def gpt2(device):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval().to(device)
    clean, corrupt = (torch.randint(0, 50257, (1, 32), device=device) for _ in range(2))
    return model, clean, corrupt, lambda out: float(out[0, -1, 11] - out[0, -1, 22])


def first_tensor(output):
    """The model's first output tensor (the logits of a Hugging Face model)."""
    if isinstance(output, torch.Tensor):
        return output
    return output[0] if isinstance(output, tuple) else next(iter(output.values()))


def hook_sweep(model, clean, corrupt, metric, sites):
    """Forward hooks by hand: record every site on the clean input, then patch one at a time.

    Recorded outputs are copied: a later in-place op (``ReLU(inplace=True)``,
    ``+=``) would otherwise change them.
    """
    modules = [model.get_submodule(site) for site in sites]
    stored = {}
    handles = [module.register_forward_hook(
        lambda m, i, o, site=site: stored.__setitem__(site, tree_map_only(
            torch.Tensor, torch.clone, o)))
        for site, module in zip(sites, modules)]
    with torch.no_grad():
        clean_metric = metric(first_tensor(model(clean)))
        for handle in handles:
            handle.remove()
        corrupt_metric = metric(first_tensor(model(corrupt)))
        values = []
        for site, module in zip(sites, modules):
            handle = module.register_forward_hook(lambda m, i, o, site=site: stored[site])
            values.append(metric(first_tensor(model(corrupt))))
            handle.remove()
    return values, clean_metric, corrupt_metric


def ours_sweep(model, clean, corrupt, metric, sites):
    with torch.no_grad():
        table = tll.patching_sweep(model, clean, corrupt, metric, sites=sites)
    return list(table["metric"]), set(table["engine"]), int(table["calls_run"].sum())


def nnsight_sweep(model, clean, corrupt, metric, sites):
    from nnsight import NNsight

    wrapped = NNsight(model)

    def at(site):
        module = wrapped
        for part in site.split("."):
            module = module[int(part)] if part.isdigit() else getattr(module, part)
        return module

    with torch.no_grad():
        stored = []
        with wrapped.trace(clean):
            for site in sites:
                stored.append(at(site).output.save())
        values = []
        for site, value in zip(sites, stored):
            with wrapped.trace(corrupt):
                at(site).output = value
                out = wrapped.output.save()
            values.append(metric(first_tensor(out)))
    return values


def torchlens_sweep(model, clean, corrupt, metric, sites):
    import torchlens as tl

    options = tl.options.CaptureOptions(intervention_ready=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = tl.trace(model, clean, capture=options)
        target = tl.trace(model, corrupt, capture=options)
        values = []
        for site in sites:
            edited = target.fork()
            edited.do(tl.module(site), tl.patch_from(source))
            output = edited[edited.output_layers[0]]
            values.append(metric(output.out))
    return values


def bench_sweeps(name, build, sites, device, repeats, others, what="blocks"):
    """Each round times the hooks and every method back to back; medians over the rounds."""
    model, clean, corrupt, metric = build(device)
    truth, _, _ = hook_sweep(model, clean, corrupt, metric, sites)
    methods = {"tll.patching_sweep": ours_sweep}
    if others:
        methods.update({"nnsight": nnsight_sweep, "torchlens 2.x": torchlens_sweep})
    print(f"\n{name}: patching sweep over {len(sites)} {what} ({device})")
    runs, notes = {}, {}
    for method, sweep in methods.items():
        try:
            result = sweep(model, clean, corrupt, metric, sites)
        except Exception as exc:  # a reference library that cannot run this model
            print(f"  {method:22s} did not run: {type(exc).__name__}: {str(exc)[:160]}")
            continue
        values = result[0] if method == "tll.patching_sweep" else result
        notes[method] = [max(abs(a - b) for a, b in zip(values, truth))]
        if method == "tll.patching_sweep":
            notes[method].append(f"engines: {', '.join(sorted(result[1]))}; calls run "
                                 f"{result[2]} (hooks: {len(sites) + 2} forwards)")
        runs[method] = lambda sweep=sweep: sweep(model, clean, corrupt, metric, sites)
    hooks = lambda: hook_sweep(model, clean, corrupt, metric, sites)  # noqa: E731
    seconds = {method: [] for method in ["hooks", *runs]}
    for _ in range(repeats):
        seconds["hooks"].append(time_call(hooks))
        for method, run in runs.items():
            seconds[method].append(time_call(run))
    print(f"  {'method':22s} {'seconds':>8s} {'hooks s':>8s} {'hooks/method':>13s} "
          f"{'of medians':>11s} {'max |metric - hooks|':>21s}")
    hook_median = statistics.median(seconds["hooks"])
    for method in runs:
        ratio = statistics.median(h / m for h, m in zip(seconds["hooks"], seconds[method]))
        median = statistics.median(seconds[method])
        extra = f"  ({notes[method][1]})" if len(notes[method]) > 1 else ""
        print(f"  {method:22s} {median:8.3f} {hook_median:8.3f} {ratio:13.2f} "
              f"{hook_median / median:11.2f} {notes[method][0]:21.3g}{extra}")


def bench_engines(device, repeats):
    model, x, _, _ = resnet(device)
    plain = lambda: model(x)  # noqa: E731
    with torch.no_grad():
        plain()
        history = tll.log_forward_pass(model, x)
        print(f"resnet50, batch 1, 224 px ({device}), {len(history)} layers")
        print(f"  {'what':44s} {'seconds':>8s} {'ratio':>7s}")
        rerun = lambda: tll.intervene(model, x, {"layer3": tll.edits.zero()})  # noqa: E731
        ratio, seconds, _ = paired(rerun, plain, repeats)
        print(f"  {'re-run tll.intervene(layer3) / plain forward':44s} {seconds:8.3f} {ratio:7.2f}")
        log = lambda: tll.log_forward_pass(model, x)  # noqa: E731
        ratio, seconds, _ = paired(rerun, log, repeats)
        print(f"  {'re-run tll.intervene(layer3) / log_forward_pass':44s} {seconds:8.3f} "
              f"{ratio:7.2f}")
        for site in ("layer4", "layer4.0"):
            replay = lambda site=site: history.intervene({site: tll.edits.zero()})  # noqa: E731
            ratio, seconds, _ = paired(replay, plain, repeats)
            print(f"  {f'replay history.intervene({site}) / plain':44s} {seconds:8.3f} "
                  f"{ratio:7.2f}  (target <= 0.3)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-others", action="store_true",
                        help="do not time nnsight and TorchLens 2.x")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.2f}")
    bench_engines(args.device, args.repeats)
    others = not args.skip_others
    bench_sweeps("resnet50", resnet, RESNET_BLOCKS, args.device, args.repeats, others)
    bench_sweeps("GPT-2 small", gpt2, GPT2_BLOCKS, args.device, args.repeats, others)
    bench_sweeps("resnet50", resnet, [f"{block}.bn3" for block in RESNET_BLOCKS], args.device,
                 args.repeats, False, "branches (each block's bn3, before the residual add)")
    bench_sweeps("GPT-2 small", gpt2, [f"{block}.attn" for block in GPT2_BLOCKS], args.device,
                 args.repeats, False, "branches (each block's attention, before the residual add)")
    print(f"\nload average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
