"""Summaries of long-format alignment results.

Design decisions
----------------
* :func:`get_results_max` takes DeepJuice's arguments: the score column, the
  grouping columns, the columns that identify a layer, and a criterion that
  names the rows used for choosing (``{"cv_split": "train"}``).  The layer is
  chosen on the criterion rows and reported on the other rows, so the
  reported score never saw the choice (no double dipping).
* Ties go to the first layer in the order of ``results``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd


def _require_columns(results: pd.DataFrame, columns, argument: str) -> None:
    missing = [column for column in columns if column not in results.columns]
    if missing:
        raise ValueError(
            f"{argument} names columns {missing} that results does not have; "
            f"its columns are: {', '.join(map(str, results.columns))}"
        )


def get_results_max(results: pd.DataFrame, score: str = "score",
                    group_vars: Sequence[str] = ("metric", "region", "subj_id"),
                    max_over: Sequence[str] = ("model_layer", "model_layer_index"),
                    criterion: Mapping[str, object] | None = None,
                    filters: Mapping[str, object] | None = None) -> pd.DataFrame:
    """Choose the best layer per group on the criterion rows and report it on the others.

    Parameters
    ----------
    results : pandas.DataFrame
        Long-format scores, e.g. from
        :func:`~torchlens_like.analysis.score_feature_maps`.
    score : str
        Column to maximise.
    group_vars : sequence of str
        One best layer is chosen per combination of these columns.
    max_over : sequence of str
        Columns that identify a layer.
    criterion : dict, optional
        ``{column: value}`` selecting the rows the choice is made on; default
        ``{"cv_split": "train"}``.
    filters : dict, optional
        ``{column: value or list of values}`` applied first, e.g.
        ``{"region": ["EVC", "OTC"]}``.

    Returns
    -------
    pandas.DataFrame
        The rows of ``results`` that do not match the criterion (e.g. the test
        split) for the chosen layers, one per group (and per remaining value of
        the criterion columns), with the choosing score added as
        ``criterion_score``.

    Examples
    --------
    >>> import pandas as pd
    >>> results = pd.DataFrame({
    ...     "metric": ["cRSA"] * 4, "region": ["V1"] * 4, "subj_id": [1] * 4,
    ...     "model_layer": ["a", "a", "b", "b"], "model_layer_index": [1, 1, 2, 2],
    ...     "cv_split": ["train", "test"] * 2, "score": [0.2, 0.25, 0.5, 0.4]})
    >>> get_results_max(results)[["model_layer", "score", "criterion_score"]].to_dict("records")
    [{'model_layer': 'b', 'score': 0.4, 'criterion_score': 0.5}]
    """
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"results must be a pandas DataFrame, got {type(results).__name__}")
    criterion = dict(criterion or {"cv_split": "train"})
    group_vars, max_over = list(group_vars), list(max_over)
    _require_columns(results, [score], "score")
    _require_columns(results, group_vars, "group_vars")
    _require_columns(results, max_over, "max_over")
    _require_columns(results, criterion, "criterion")
    _require_columns(results, filters or {}, "filters")
    selected = results
    for column, values in (filters or {}).items():
        allowed = values if isinstance(values, (list, tuple, set)) else [values]
        selected = selected[selected[column].isin(allowed)]
    chooses = pd.Series(True, index=selected.index)
    for column, value in criterion.items():
        chooses &= selected[column] == value
    choosing = selected[chooses]
    if choosing.empty:
        raise ValueError(f"no rows of results match criterion {criterion}; check its column and value")
    best = choosing.loc[choosing.groupby(group_vars, sort=False)[score].idxmax(), group_vars + max_over + [score]]
    best = best.rename(columns={score: "criterion_score"})
    return selected[~chooses].merge(best, on=group_vars + max_over, how="inner").reset_index(drop=True)
