"""The examples: --smoke runs on user data written here (a TSV of pairs, a
folder per class, a text file) and on the offline defaults; bad user data
ends a run with an error that names the file and the line."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import keras
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))  # the examples import `common`

ONES = "zero one two three four five six seven eight nine".split()
TEENS = ("ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
         "eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _words(n):
    if n < 10:
        return ONES[n]
    if n < 20:
        return TEENS[n - 10]
    tens, ones = divmod(n, 10)
    return TENS[tens] + ("" if ones == 0 else " " + ONES[ones])


def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _output_flags(tmp_path):
    return [
        "--smoke", "--verbose", "0",
        "--export-dir", str(tmp_path / "export"),
        "--plot-dir", str(tmp_path / "plots"),
        "--log-dir", str(tmp_path / "logs"),
    ]


def _check_outputs(summary, tmp_path, png):
    """Trained, evaluated, plotted, exported, reloaded: every artefact is there."""
    export = pathlib.Path(summary["export"])
    assert export == tmp_path / "export" / "1"
    assert (export / "saved_model.pb").is_file()
    assert (export / "assets.extra" / "model.keras").is_file()
    if png is None:  # a kernel without token-by-token weights: no heat map
        assert summary["attention_png"] is None
    else:
        assert (tmp_path / "plots" / png).stat().st_size > 0
    assert any(f.name.startswith("events") for f in (tmp_path / "logs").rglob("*"))
    assert summary["served_equals_in_process"] is True


@pytest.fixture
def pairs_tsv(tmp_path):
    lines = [f"{_words(n)}\t{n}" for n in range(100)]
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def class_folders(tmp_path):
    root = tmp_path / "reviews"
    texts = {
        "neg": ["dull and slow", "a boring plot", "bad acting, weak story", "too long"],
        "pos": ["great fun", "a moving story", "wonderful acting", "loved every minute"],
    }
    for label, samples in texts.items():
        (root / label).mkdir(parents=True)
        for i in range(12):
            (root / label / f"{i}.txt").write_text(f"{samples[i % 4]} {i}", encoding="utf-8")
    return root


@pytest.fixture
def text_file(tmp_path):
    rng_words = "the cat sat on a mat while the dog ran to the park and back".split()
    paragraphs = []
    for p in range(40):
        lines = [" ".join(rng_words[(p + i) % len(rng_words):] + rng_words[:(p + i) % 5])
                 for i in range(4)]
        paragraphs.append("\n".join(lines))
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return path


def test_translate_smoke_on_a_tsv(tmp_path, pairs_tsv):
    # With a local-attention encoder and a Performer decoder self-attention
    # (cached decoding in the export; the heat map is the decoder's
    # cross-attention, which stays exact).
    summary = _example("translate").main(
        _output_flags(tmp_path) + ["--tsv", str(pairs_tsv), "--tokenizer", "character",
                                   "--attention-kernel", "local",
                                   "--kernel-option", "window_size=4",
                                   "--decoder-attention-kernel", "performer",
                                   "--decoder-kernel-option", "num_random_features=16"])
    _check_outputs(summary, tmp_path, "translate_attention.png")
    assert summary["data"].startswith(f"{pairs_tsv}: 80 train / 10 validation / 10 test")
    assert 0 <= summary["test_bleu"] <= 100 and len(summary["served_translations"]) == 5
    assert summary["attention_kernel_options"] == {"window_size": 4}
    assert summary["decoder_attention_kernel"] == "performer"
    assert summary["decoder_attention_kernel_options"] == {"num_random_features": 16}


def test_translate_smoke_with_a_big_bird_encoder(tmp_path, pairs_tsv):
    # The export takes sources of any length: BigBird gets the padded length
    # as its `sequence_length` (the block pattern it pads every input to),
    # and the served translations equal the in-process ones.
    summary = _example("translate").main(
        _output_flags(tmp_path) + ["--tsv", str(pairs_tsv), "--tokenizer", "character",
                                   "--attention-kernel", "big_bird",
                                   "--kernel-option", "block_size=2",
                                   "--kernel-option", "num_global_blocks=1",
                                   "--kernel-option", "num_random_blocks=1"])
    _check_outputs(summary, tmp_path, "translate_attention.png")
    options = summary["attention_kernel_options"]
    assert options.pop("sequence_length") >= 10  # the padded source/target length
    assert options == {"block_size": 2, "num_global_blocks": 1, "num_random_blocks": 1}


def test_classify_smoke_on_a_folder_per_class(tmp_path, class_folders):
    summary = _example("classify").main(
        _output_flags(tmp_path) + ["--data-dir", str(class_folders), "--plot-head", "0"])
    _check_outputs(summary, tmp_path, "classify_attention.png")
    assert summary["data"].endswith("2 classes")
    assert set(summary["served_label_names"]) <= {"neg", "pos"}
    assert 0 <= summary["test_accuracy"] <= 1


def test_generate_smoke_on_a_text_file(tmp_path, text_file):
    summary = _example("generate").main(
        _output_flags(tmp_path) + ["--text-files", str(text_file), "--plot-head", "mean"])
    _check_outputs(summary, tmp_path, "generate_attention.png")
    assert summary["validation_perplexity"] > 1
    assert len(summary["served_continuations"]) == 4


def test_generate_smoke_with_performer_attention(tmp_path, text_file):
    # Performer's cached (running-state) decoding inside the exported serving graph,
    # reloaded in a fresh TensorFlow-only process (served == in-process).
    summary = _example("generate").main(
        _output_flags(tmp_path) + ["--text-files", str(text_file),
                                   "--attention-kernel", "performer",
                                   "--kernel-option", "num_random_features=16"])
    _check_outputs(summary, tmp_path, None)
    assert summary["attention_kernel"] == "performer"
    assert summary["attention_kernel_options"] == {"num_random_features": 16}
    assert len(summary["served_continuations"]) == 4


def test_pretrain_mlm_smoke_on_a_text_file(tmp_path, text_file):
    # With a local attention kernel: the flags reach the builder, the
    # export and its reload (the model file records the kernel).
    summary = _example("pretrain_mlm").main(
        _output_flags(tmp_path) + ["--text-files", str(text_file),
                                   "--attention-kernel", "local",
                                   "--kernel-option", "window_size=4"])
    _check_outputs(summary, tmp_path, "pretrain_mlm_attention.png")
    assert summary["validation_perplexity"] > 1
    assert all("[MASK]" not in text for text in summary["served_filled"])
    assert summary["attention_kernel"] == "local"
    assert summary["attention_kernel_options"] == {"window_size": 4}
    model = keras.saving.load_model(
        pathlib.Path(summary["export"]) / "assets.extra" / "model.keras", safe_mode=True)
    assert model.get_layer("encoder_block_0").self_attention.window_size == 4


def test_classify_with_a_kernel_that_has_no_heat_map(tmp_path, class_folders):
    # Linformer: its sequence_length is the padded length (--max-length);
    # it returns no token-by-token weights, so the plot is skipped.
    summary = _example("classify").main(
        _output_flags(tmp_path) + ["--data-dir", str(class_folders),
                                   "--attention-kernel", "linformer",
                                   "--kernel-option", "projection_dim=8"])
    assert summary["attention_kernel_options"] == {
        "projection_dim": 8, "sequence_length": 32}
    assert summary["attention_png"] is None
    assert not (tmp_path / "plots" / "classify_attention.png").exists()
    assert summary["served_equals_in_process"] is True


@pytest.mark.parametrize("argv,message", [
    (["--kernel-option", "window_size"], "expected NAME=VALUE"),
    (["--attention-kernel", "local", "--kernel-option", "window=3"],
     "Unrecognized keyword arguments passed to LocalAttention"),
    (["--attention-kernel", "flash"], "invalid choice: 'flash'"),
])
def test_bad_kernel_flags_are_parser_errors(capsys, argv, message):
    err = _error(capsys, "classify", ["--smoke"] + argv)
    assert message in err


@pytest.mark.parametrize("name,flag", [
    ("generate", "--attention-kernel"), ("translate", "--decoder-attention-kernel")])
def test_decoders_offer_only_kernels_with_cached_decoding(capsys, name, flag):
    err = _error(capsys, name, ["--smoke", flag, "linformer"])
    assert "invalid choice: 'linformer'" in err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["translate", "classify", "generate", "pretrain_mlm"])
def test_smoke_on_the_offline_default(tmp_path, name):
    summary = _example(name).main(_output_flags(tmp_path))
    _check_outputs(summary, tmp_path, f"{name}_attention.png")


def _error(capsys, name, argv):
    """Run an example that must stop on bad data; its stderr."""
    with pytest.raises(SystemExit) as exit_info:
        _example(name).main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_bad_translation_data(tmp_path, capsys):
    missing = tmp_path / "missing.tsv"
    err = _error(capsys, "translate", ["--smoke", "--tsv", str(missing)])
    assert f"Translation TSV file not found: {missing}" in err
    malformed = tmp_path / "bad.tsv"
    malformed.write_text("one\tun\ntwo\tdeux\nthree trois\n", encoding="utf-8")
    err = _error(capsys, "translate", ["--smoke", "--tsv", str(malformed)])
    assert f"{malformed}:3: malformed line" in err and "found no tab" in err
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n\n", encoding="utf-8")
    err = _error(capsys, "translate", ["--smoke", "--tsv", str(empty)])
    assert f"{empty}: empty dataset" in err
    err = _error(capsys, "translate", ["--tsv", str(empty), "--tfds",
                                       "ted_hrlr_translate/pt_to_en"])
    assert "--tsv and --tfds are exclusive" in err


def test_tfds_data_that_is_not_there(tmp_path, capsys):
    err = _error(capsys, "translate", [
        "--smoke", "--tfds", "ted_hrlr_translate/pt_to_en", "--data-dir", str(tmp_path)])
    assert "is not prepared in data_dir" in err


def test_bad_classification_data(tmp_path, capsys):
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    err = _error(capsys, "classify", ["--smoke", "--data-dir", str(empty_dir)])
    assert f"{empty_dir}: empty dataset" in err
    (empty_dir / "pos").mkdir()
    err = _error(capsys, "classify", ["--smoke", "--data-dir", str(empty_dir)])
    assert f"{empty_dir / 'pos'}: empty class" in err
    csv = tmp_path / "reviews.csv"
    csv.write_text("text,label\ngreat,pos\n,neg\n", encoding="utf-8")
    err = _error(capsys, "classify", ["--smoke", "--csv", str(csv)])
    assert f"{csv}:3: malformed row" in err
    err = _error(capsys, "classify", ["--smoke", "--csv", str(tmp_path / "no.csv")])
    assert f"Classification CSV file not found: {tmp_path / 'no.csv'}" in err


def test_bad_text_files(tmp_path, capsys):
    missing = tmp_path / "missing.txt"
    err = _error(capsys, "generate", ["--smoke", "--text-files", str(missing)])
    assert f"Text file not found: {missing}" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    for name in ("generate", "pretrain_mlm"):
        err = _error(capsys, name, ["--smoke", "--text-files", str(empty)])
        assert f"{empty}: empty file" in err
    short = tmp_path / "short.txt"
    short.write_text("just one line\n", encoding="utf-8")
    err = _error(capsys, "generate", ["--smoke", "--text-files", str(short)])
    assert f"{short}: too little text" in err
    err = _error(capsys, "pretrain_mlm", ["--smoke", "--text-files", str(short)])
    assert f"{short}: too few paragraphs" in err


# Two logical CPUs must be configured before TensorFlow starts, hence a fresh
# process that configures them and then runs the example as a script.
_RUN_ON_TWO_CPUS = """
import runpy, sys
from keras_attention.distribute import configure_logical_devices
configure_logical_devices(2)
sys.path.insert(0, sys.argv[1])
script = sys.argv[2]
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name="__main__")
"""


def test_classify_smoke_under_a_mirrored_strategy_of_two_replicas(tmp_path, class_folders):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run(
        [sys.executable, "-c", _RUN_ON_TWO_CPUS, str(EXAMPLES), str(EXAMPLES / "classify.py"),
         *_output_flags(tmp_path), "--data-dir", str(class_folders), "--strategy", "mirrored"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "strategy: mirrored -> MirroredStrategy (2 replica(s))" in result.stdout
    summary = json.loads((tmp_path / "plots" / "classify_summary.json").read_text())
    assert (summary["strategy"], summary["replicas"]) == ("mirrored", 2)
    _check_outputs(summary, tmp_path, "classify_attention.png")


@pytest.mark.parametrize("name", ["translate", "classify", "generate", "pretrain_mlm"])
def test_unknown_or_unsupported_strategy_is_an_argparse_error(capsys, name):
    err = _error(capsys, name, ["--smoke", "--strategy", "horovod"])
    assert "argument --strategy: invalid choice: 'horovod'" in err
    err = _error(capsys, name, ["--smoke", "--strategy", "multi_worker"])
    assert "argument --strategy: the examples train with Keras fit" in err


def test_quickstart_strategy_flag(capsys):
    err = _error(capsys, "quickstart", ["--smoke", "--strategy", "horovod"])
    assert "argument --strategy: invalid choice: 'horovod'" in err


def test_every_example_documents_its_run_command():
    for name in ("translate", "classify", "generate", "pretrain_mlm"):
        doc = _example(name).__doc__
        assert f"python examples/{name}.py\n" in doc
        assert f"python examples/{name}.py --smoke" in doc
        assert os.path.isfile(EXAMPLES / f"{name}.py")


@pytest.mark.slow
@pytest.mark.parametrize("name,dataset", [
    ("translate", "ted_hrlr_translate/pt_to_en"),
    ("classify", "imdb_reviews"),
    ("generate", "tiny_shakespeare"),
])
def test_smoke_on_mocked_tfds(tmp_path, name, dataset):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=64):
        summary = _example(name).main(_output_flags(tmp_path) + ["--tfds", dataset])
    _check_outputs(summary, tmp_path, f"{name}_attention.png")
    assert summary["data"].startswith(f"TFDS {dataset}")
