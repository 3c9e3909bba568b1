from components.model import build_cnn_basic


def test_cnn_basic_matches_the_seed_layer_for_layer() -> None:
    model = build_cnn_basic()
    assert model.name == "CNN_Basic"
    assert model.count_params() == 1_676_266
    described = [
        (
            type(layer).__name__,
            getattr(layer, "filters", None) or getattr(layer, "units", None) or getattr(layer, "rate", None),
        )
        for layer in model.layers
    ]
    assert described == [
        ("Conv2D", 32),
        ("Conv2D", 32),
        ("MaxPooling2D", None),
        ("Dropout", 0.25),
        ("Conv2D", 64),
        ("Conv2D", 64),
        ("MaxPooling2D", None),
        ("Dropout", 0.25),
        ("Flatten", None),
        ("Dense", 512),
        ("Dropout", 0.25),
        ("Dense", 10),
        ("Softmax", None),
    ]
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" and c.activation.__name__ == "relu" for c in convs)
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
