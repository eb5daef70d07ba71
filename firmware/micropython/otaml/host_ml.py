"""The ML task on the host device: the model and card the running image carries, recorded samples."""

from otaml import ml


def setup(port, runner, model, card, samples_csv):
    try:
        runner.ml = ml.ML(port, card, model)
    except ml.CardError as e:
        port.log("E", "otaml_ml", "model card: %s" % e)
        return
    replay = ml.Replay(samples_csv, runner.ml.card.n_features)
    if not replay.rows:
        port.log("E", "otaml_ml", "no sensor samples: the ML task has nothing to infer")
    runner.sensor = replay
