"""Tutorial: log every operation of a forward pass and pick layers to save.

Run: ``python tutorials/logging_a_forward_pass.py``. It uses ResNet-18 with
random weights and scikit-image's sample photographs, so it needs no download
(pass ``weights="DEFAULT"`` to torchvision for ImageNet weights).
"""

import torch
import torchvision

import torchlens_like as tll
from torchlens_like.cli import sample_images

# 1. A model and a batch of real photographs (6 x 3 x 224 x 224, ImageNet-normalized).
torch.manual_seed(0)
model = torchvision.models.resnet18().eval()
images = sample_images()

# 2. Metadata only: every op of the forward pass, no activations kept.
meta = tll.get_model_metadata(model, images)
print(meta)

# 3. Labels follow the TorchLens paper: {type}_{type_num}_{total_num}.
#    Any module address works too, at any nesting depth.
print(meta["conv2d_1"].layer_label, "is the output of", meta["conv2d_1"].module_outputs)
print("layer3 returns", meta["layer3"].layer_label)

# 4. Choose layers programmatically, e.g. every ReLU that follows a batch norm + the pooled output.
chosen = [layer.layer_label for layer in meta
          if layer.layer_type == "relu" and layer.parent_nodes
          and layer.parent_nodes[0].layer_type in ("batchnorm", "add")][-4:]
chosen.append("avgpool")
history = tll.log_forward_pass(model, images, layers_to_save=chosen)
for label in history.saved_layers:
    layer = history[label]
    print(f"{label:24s} {tuple(layer.tensor_contents.shape)}  modules: {layer.containing_modules}")

# 5. The table as a DataFrame, the graph as networkx.
frame = history.to_pandas()
print(frame[["layer_label", "func_name", "tensor_shape", "distance_from_input"]].head(8))
graph = history.to_networkx()
print(graph.number_of_nodes(), "nodes,", graph.number_of_edges(), "edges")
