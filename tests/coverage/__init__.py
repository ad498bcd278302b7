"""The coverage suite (issue 15): the standard vision families and onnx's light model zoo."""
