"""`serendip learn recommend|train|predict`: supervised learning on tables (thin handlers)."""
from __future__ import annotations

import argparse

from ._argtypes import int_at_least, n_jobs, non_negative_int, positive_int


def _add_feature_args(p) -> None:
    p.add_argument("table", help="FITS, CSV(.gz), ECSV or Parquet table")
    p.add_argument("--target", required=True, help="target column")
    g = p.add_argument_group("features (default: every numeric non-identifier column)")
    g.add_argument("--features", nargs="+", metavar="COL", help="feature columns")
    g.add_argument("--colors", metavar="BANDS", help="adjacent colours plus r, e.g. ugriz -> u-g g-r r-i i-z r")
    p.add_argument("--where", metavar="QUERY", help="row filter, pandas syntax, e.g. \"spec_class == 'GALAXY'\"")
    p.add_argument("--raw", action="store_true", help="columns are raw pixels (spectra), not measured features")
    p.add_argument("--task", choices=("classification", "regression"), help="default: inferred from the target")


def register(subparsers) -> None:
    learn = subparsers.add_parser("learn", help="supervised learning: recommend, train, predict",
                                  description="Pick, train, validate and apply supervised models on tables.")
    sub = learn.add_subparsers(dest="learn_verb", metavar="SUBVERB", required=True)

    p = sub.add_parser("recommend", help="rank algorithms for a table, with reasons")
    _add_feature_args(p)
    p.set_defaults(func=_recommend)

    p = sub.add_parser("train", help="train and validate a model; write it and an evaluation report")
    _add_feature_args(p)
    p.add_argument("-o", "--output", required=True, help="model file: model.skops (preferred) or model.joblib")
    p.add_argument("--algorithm", default="auto", choices=("auto", "svm", "rf", "ann", "gbt", "cnn"))
    p.add_argument("--test-size", type=float, default=0.2, help="held-out fraction (default 0.2)")
    p.add_argument("--cv", type=int_at_least(2), default=5, help="cross-validation folds (default 5)")
    p.add_argument("--group", metavar="COL", help="group column: no group is split across train/test or folds")
    p.add_argument("--n-iter", type=positive_int, default=6, help="configurations tried per algorithm (default 6)")
    p.add_argument("--search-max-rows", type=non_negative_int, default=None, metavar="N",
                   help="the hyper-parameter search sees at most N training rows (default 10000; 0 = all); "
                        "the chosen model is always refitted on the whole training split")
    p.add_argument("--redshift", action=argparse.BooleanOptionalAction, default=None,
                   help="the target is (--redshift) or is not (--no-redshift) a redshift: σ_NMAD etc. "
                        "(default: guessed from the name, e.g. 'z' or 'redshift')")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--n-jobs", type=n_jobs, default=None, help="parallel jobs")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None,
                   help="where the 1-D CNN trains (default cpu; 'auto' takes a CUDA GPU when PyTorch sees "
                        "one); the other algorithms always run on the CPU")
    p.add_argument("--no-report", action="store_true", help="skip the HTML/PNG report")
    p.set_defaults(func=_train)

    p = sub.add_parser("predict", help="apply a saved model to a table")
    p.add_argument("model", help="model file written by 'serendip learn train'")
    p.add_argument("table", help="FITS, CSV(.gz), ECSV or Parquet table")
    p.add_argument("-o", "--output", required=True, help="predictions.fits|.parquet|.csv")
    p.add_argument("--trust", action="store_true",
                   help="confirm you trust the model file (required; .joblib files can run code when loaded)")
    p.add_argument("--where", metavar="QUERY", help="row filter, pandas syntax")
    p.add_argument("--keep", nargs="+", metavar="COL", help="input columns to copy (default: identifier columns)")
    p.set_defaults(func=_predict)


def _recommend(args) -> int:
    from ..learn.tables import recommend_table

    recs = recommend_table(args.table, args.target, features=args.features, colors=args.colors, raw=args.raw,
                           query=args.where, task=args.task)
    for rank, rec in enumerate(recs, 1):
        print(f"{rank}. {rec}")
    return 0


def _train(args) -> int:
    from ..learn.tables import train_table

    result, written = train_table(args.table, args.target, args.output, features=args.features,
                                  colors=args.colors, algorithm=args.algorithm, query=args.where,
                                  group=args.group, report=not args.no_report, task=args.task, raw=args.raw,
                                  test_size=args.test_size, cv=args.cv, n_iter=args.n_iter,
                                  # not given: train's own default; 0: every row
                                  **({} if args.search_max_rows is None
                                     else {"search_max_rows": args.search_max_rows or None}),
                                  redshift=args.redshift, random_state=args.seed, n_jobs=args.n_jobs,
                                  progress=args.progress,
                                  cnn_params={"device": args.device} if args.device else None)
    print(result.summary_text())
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


def _predict(args) -> int:
    from ..learn.tables import predict_table

    out = predict_table(args.model, args.table, args.output, trusted=args.trust, query=args.where,
                        keep_columns=args.keep)
    print(f"wrote {len(out)} predictions to {args.output}")
    return 0
