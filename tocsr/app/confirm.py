"""The confirmation stages: a bundle of a search's choice for the device it was made for, and its verdict
(bench.confirm). For a device that is not attached, whose choice is a prediction until the device times it."""

from __future__ import annotations

from pathlib import Path

from bench.confirm import Confirmation, confirm_results, export_confirmation, targets_from
from bench.profile import load_profile
from search.result import SearchResult
from search.trials import TrialLog
from tocsr.core.distill.bank import new_bank
from tocsr.core.errors import ConfigError
from tocsr.core.space import derive_search_space
from tocsr.core.teacher.train import load_teacher
from tocsr.core.training import progress

CONFIRMATION_FILE = "confirmation.json"


def stage_confirm_export(search_dir: str | Path, teacher_dir: str | Path, profile_ref: str | Path,
                         out_dir: str | Path, runners_up: int = 2) -> Path:
    """Write the confirmation bundle of the search in `search_dir`: the teacher (as shipped, or its backbone), the
    chosen model (with its encoder and decoder), and `runners_up` more (the next feasible trials by the search's objective)."""
    search_dir = Path(search_dir)
    result = SearchResult.load(search_dir)
    profile = load_profile(profile_ref)
    if profile.name != result.profile_name:
        raise ConfigError(f"{search_dir} chose for profile {result.profile_name!r}, -p gives {profile.name!r}: give "
                          "the profile the search was run with")
    if result.scope != profile.budgets.scope:
        raise ConfigError(f"{search_dir} searched under budgets on the {result.scope}, {profile.name}'s bound the "
                          f"{profile.budgets.scope}: give the profile the search was run with")
    teacher = load_teacher(teacher_dir)
    space = derive_search_space(teacher.unet)
    if result.space_id != space.space_id:
        raise ConfigError(f"{search_dir} searched space {result.space_id}, the teacher in {teacher_dir} has "
                          f"{space.space_id}: give the teacher the search used")
    seen, ups = {result.chosen.key}, []
    for t in sorted((t for t in TrialLog(search_dir / "trials.jsonl").read() if t.feasible and t.objective is not None),
                    key=lambda t: t.objective):
        if t.key not in seen and len(ups) < runners_up:
            seen.add(t.key)
            ups.append(t.choices)
    c = result.chosen
    targets = targets_from(space, dict(c.spec.items()), result.decoder, c.latency_vs_teacher, ups, result.encoder)
    search = {"folder": str(search_dir), "chosen": c.key, "decoder": result.decoder, "encoder": result.encoder,
              "status": c.how,
              "basis": c.basis, "budget_in_words": result.budget_in_words}
    with progress(f"confirm/{profile.name}", len(targets) + 2) as bar:
        return export_confirmation(teacher, profile, new_bank(space), out_dir, targets, search,
                                   progress=lambda _msg: bar.update(1))


def stage_confirm(results: str | Path, bundle: str | Path | None = None, out: str | Path | None = None
                  ) -> tuple[Confirmation, Path]:
    """The device's verdict on a confirmation bundle's results, saved to `out` (default: beside the results)."""
    conf = confirm_results(results, bundle)
    path = Path(out) if out is not None else Path(results).parent / CONFIRMATION_FILE
    conf.save(path)
    return conf, path
