/* model: networks built from a short text spec, so that a NAS search or a
 * command line can vary them. Grammar (docs/nn.md has the full reference):
 *
 *   spec   = family [ ":" option { "," option } ]
 *   option = key "=" value ;  value = number { "-" number }  (a list)
 *
 *   cnn         plain CNN (the classifier default)
 *   resnet      ResNet / ResNeXt (basic or bottleneck blocks, groups)
 *   unet        U-Net for per-pixel outputs
 *   cyclegan    CycleGAN ResNet-block generator
 *   patchgan    PatchGAN discriminator
 *
 * e.g. "resnet:depths=2-2-2,widths=64-128-256,groups=8,bottleneck=2". */
#ifndef NN_MODEL_H
#define NN_MODEL_H

#include <stdint.h>

#include "nn/net.h"

/* The classifier default of cairn-train-classifier. */
#define NN_MODEL_DEFAULT "cnn:widths=16-32,convs=2"

/* Build (and finish) a net for inputs of c x h x w with nout outputs (classes,
 * or output channels for unet/cyclegan; ignored by patchgan). net->arch gets
 * the canonical spec (every option spelled out), which rebuilds the same net. */
int nn_model_build(struct nn_net *net, const struct nn_backend *be, const char *spec, int c, int h,
		   int w, int nout, uint64_t seed, struct error *err);

/* Per-pixel families (unet, cyclegan) give an output of the input's height
 * and width when both are multiples of 2^(levels of downsampling): that
 * multiple (unet:depth=3: 8). 0 for the families with one output per image
 * (cnn, resnet, resnext) or per patch (patchgan); -1 with a message for a bad
 * spec. */
int nn_model_size_multiple(const char *spec, struct error *err);

/* One line: "resnet:...: 1.23 M params, 0.456 GFLOP per sample (forward)". */
void nn_model_summary(const struct nn_net *net, char *out, size_t size);

#endif
