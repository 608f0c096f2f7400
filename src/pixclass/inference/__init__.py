from pixclass.inference.predictor import Prediction, Predictor

__all__ = ["Prediction", "Predictor"]
