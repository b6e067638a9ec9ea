"""TensorFlow at run time, shared by every stage that touches a TensorFlow model.

``loader`` imports TensorFlow safely (after Triton); ``state`` keeps
TensorFlow's and Keras' global state as it was around a call. The capture
backend, its replayer and the model zoo's ``keras`` source all read these,
so they sit below every stage and import nothing else of the package.
Importing this package does not import TensorFlow.
"""
