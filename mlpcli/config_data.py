"""The checks of a config's ``data:`` options for tables: ``data.scaling`` (a name, or per
column), ``data.categorical`` and ``data.missing`` (see ``mlpcli.data.table_encoding``); and
of ``augment:``, for images (see ``mlpcli.data.augment``)."""

from mlpcli.config_check import _show
from mlpcli.data import DEFAULT_SCALING, SCALINGS, holds_pixels
from mlpcli.data.augment import SETTINGS, TRANSFORMS
from mlpcli.data.table_encoding import STRATEGIES


def augment_options(check, cfg):
    """``augment:`` (null: none) as ``{transforms: [...], fill_mode, fill_value, interpolation}``,
    each transform checked against its declaration; for image datasets only."""
    if cfg["augment"] is None:
        return
    defaults = {"transforms": None, **SETTINGS.defaults()}
    if not isinstance(cfg["augment"], dict):
        check.error("augment", f"must be a mapping with transforms (or null: none), got {_show(cfg['augment'])}")
        return
    spec = cfg["augment"] = check.mapping("augment", cfg["augment"], set(defaults), defaults)
    for param in SETTINGS.params:
        spec[param.name] = check.param(f"augment.{param.name}", spec[param.name], param, SETTINGS)
    transforms = spec["transforms"]
    if not isinstance(transforms, list) or not transforms:
        check.error("augment.transforms", "must be a non-empty list of transforms (random_rotation, random_zoom, "
                                          f"random_translation, elastic), got {_show(transforms)}")
        transforms = []
    spec["transforms"] = [check.component(f"augment.transforms[{i}]", t, TRANSFORMS)
                          for i, t in enumerate(transforms)]
    names = [t["type"] for t in spec["transforms"] if t]
    if "elastic" in names[:-1]:
        check.error(f"augment.transforms[{names.index('elastic')}]",
                    "elastic must be the last transform (its field moves the output pixels)")
    dataset = cfg["data"]["dataset"] if isinstance(cfg["data"], dict) else None
    if isinstance(dataset, str) and dataset in DEFAULT_SCALING and not holds_pixels(dataset):
        check.error("augment", f"is for images (mnist, fashion_mnist, image_folder), not dataset {_show(dataset)}")

def table_options(check, data):
    """data.scaling (a name, or for csv ``{default, columns: {column: name}}``), and the csv-only
    data.categorical (column names) and data.missing (``{strategy, value, columns: {column:
    {strategy, value}}}``; a strategy left out or null: those columns' missing cells are errors)."""
    scaling, table = data["scaling"], data["dataset"] == "csv"
    if isinstance(scaling, dict) and table:
        scaling = data["scaling"] = check.mapping("data.scaling", scaling, {"default", "columns"},
                                                  {"default": "none", "columns": {}})
        scaling["default"] = check.choice("data.scaling.default", scaling["default"], SCALINGS, "scaling")
        columns = check.mapping("data.scaling.columns", scaling["columns"], set(scaling["columns"] or ()))
        scaling["columns"] = {c: check.choice(f"data.scaling.columns.{c}", v, SCALINGS, "scaling")
                              for c, v in columns.items()}
    else:
        if scaling == "auto":
            scaling = DEFAULT_SCALING.get(data["dataset"], "none")
        data["scaling"] = check.choice("data.scaling", scaling, SCALINGS, "scaling")
    categorical = data["categorical"]
    if not isinstance(categorical, list) or not all(isinstance(c, str) and c for c in categorical):
        check.error("data.categorical", f"must be a list of column names, got {_show(categorical)}")
        data["categorical"] = []
    if data["missing"] is not None:
        data["missing"] = _missing_spec(check, "data.missing", data["missing"], per_column=True)
    if not table and (data["categorical"] or data["missing"] is not None):
        check.error("data.categorical" if data["categorical"] else "data.missing",
                    f"is for dataset 'csv' (columns of a table), not {_show(data['dataset'])}")
    weight_column = check.string("data.weight_column", data["weight_column"], nullable=True)
    if weight_column is not None and not table:
        check.error("data.weight_column", f"is for dataset 'csv' (a column of a table), not {_show(data['dataset'])}")
    elif weight_column is not None and weight_column in (data["label_column"], *data["categorical"]):
        check.error("data.weight_column", f"names {_show(weight_column)}, which is the label column or a "
                    "categorical feature; a weight column is neither")
    if table and data["label_column"] in data["categorical"]:
        check.error("data.categorical", f"names the label column {_show(data['label_column'])}, which is no feature")


def _missing_spec(check, path, value, per_column):
    keys = {"strategy", "value"} | ({"columns"} if per_column else set())
    spec = check.mapping(path, value, keys, dict.fromkeys(keys))
    strategy = spec["strategy"]
    if strategy is not None or not per_column:
        strategy = spec["strategy"] = check.choice(f"{path}.strategy", strategy, STRATEGIES, "strategy")
    if strategy == "constant" and (isinstance(spec["value"], bool)
                                   or not isinstance(spec["value"], (int, float, str))):
        check.error(f"{path}.value", f"strategy constant needs a value (a number, or a category), got "
                                     f"{_show(spec['value'])}")
    elif strategy != "constant" and spec["value"] is not None:
        check.error(f"{path}.value", f"is for strategy constant, not {_show(strategy)}")
    if per_column:
        columns = check.mapping(f"{path}.columns", spec["columns"], set(spec["columns"] or ()))
        spec["columns"] = {c: _missing_spec(check, f"{path}.columns.{c}", v, per_column=False)
                           for c, v in columns.items()}
    return spec
