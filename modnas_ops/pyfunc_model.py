"""The model file MLflow logs for every library pyfunc (MLflow's "models from code": no pickled object).

At load time MLflow runs this file with ``modnas_ops`` on the path (logged as code); the model's ``loader``
artifact ("module:function") says which library object to build from the other artifacts.
"""

import mlflow

from modnas_ops.tracking import LibraryPyfunc

mlflow.models.set_model(LibraryPyfunc())
