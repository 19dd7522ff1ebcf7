"""A run's CSV files: the header once, one whole row per append, and new columns (a run resumed by
a newer version) added without losing or shifting the rows already written."""

import csv

from slac_robot.storage import append_csv_row, csv_text


def read(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_rows_are_appended_under_one_header(tmp_path):
    path = tmp_path / "eval.csv"
    append_csv_row(path, {"env_steps": 100, "success_rate": 0.5})
    append_csv_row(path, {"env_steps": 200, "success_rate": 0.8})
    assert read(path) == [["env_steps", "success_rate"], ["100", "0.5"], ["200", "0.8"]]


def test_a_row_with_new_columns_rewrites_the_file_once_with_the_older_rows_blank_there(tmp_path):
    path = tmp_path / "train_episodes.csv"
    append_csv_row(path, {"episode": 0, "return": -3.5})
    append_csv_row(path, {"episode": 1, "trip": "position_limit", "return": 12.0})
    append_csv_row(path, {"episode": 2, "return": 1.0, "trip": ""})
    assert read(path) == [["episode", "return", "trip"], ["0", "-3.5", ""], ["1", "12.0", "position_limit"],
                          ["2", "1.0", ""]]


def test_csv_text_quotes_what_needs_it_and_leaves_missing_keys_blank():
    text = csv_text(["goal", "note", "success"], [{"goal": "+1.57", "note": 'a, "b"'}, {"goal": "-1.57", "success": 1}])
    assert list(csv.reader(text.splitlines())) == [["goal", "note", "success"], ["+1.57", 'a, "b"', ""],
                                                   ["-1.57", "", "1"]]
    assert csv_text(["goal"], [{"goal": 0}], with_header=False) == "0\r\n"
