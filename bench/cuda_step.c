/* cuda_step: time of one training step (forward, softmax cross-entropy over
 * the output channels, backward, SGD) of any nn/ model on a backend, for the
 * side-by-side with PyTorch in bench/cuda.sh. Prints one line:
 *   cairn DEVICE PRECISION ARCH batch B CxHxW: X ms/step, Y images/s
 * Example: cuda_step --device cuda --arch unet:depth=4,base=16 --batch 8 --size 256 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/mem.h"
#include "nn/backend.h"
#include "nn/model.h"
#include "nn/net.h"
#include "nn/optim.h"
#ifdef CAIRN_CUDA
#include "nn/cuda/cuda.h"
#endif

static int usage(const char *prog, int rc)
{
	fprintf(rc ? stderr : stdout,
		"usage: %s [--device cpu|cuda] [--precision fp32|tf32] [--arch SPEC] [--batch N]\n"
		"          [--channels C] [--size S] [--classes K] [--steps N] [--warmup N]\n"
		"example: %s --device cuda --arch unet:depth=4,base=16 --batch 8 --size 256 --classes 2\n",
		prog, prog);
	return rc;
}

int main(int argc, char **argv)
{
	const char *device = "cpu", *arch = NN_MODEL_DEFAULT, *precision = "tf32";
	int batch = 128, channels = 1, size = 28, classes = 10, steps = 50, warmup = 5;
	static const struct option opts[] = {
		{"device", required_argument, 0, 'd'},	  {"precision", required_argument, 0, 'p'},
		{"arch", required_argument, 0, 'a'},	  {"batch", required_argument, 0, 'b'},
		{"channels", required_argument, 0, 'c'}, {"size", required_argument, 0, 's'},
		{"classes", required_argument, 0, 'k'},  {"steps", required_argument, 0, 'n'},
		{"warmup", required_argument, 0, 'w'},	  {"help", no_argument, 0, 'h'},
		{0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'd': device = optarg; break;
		case 'p': precision = optarg; break;
		case 'a': arch = optarg; break;
		case 'b': batch = atoi(optarg); break;
		case 'c': channels = atoi(optarg); break;
		case 's': size = atoi(optarg); break;
		case 'k': classes = atoi(optarg); break;
		case 'n': steps = atoi(optarg); break;
		case 'w': warmup = atoi(optarg); break;
		case 'h': return usage(argv[0], 0);
		default: return usage(argv[0], 2);
		}
	}
	if (batch < 1 || channels < 1 || size < 1 || classes < 2 || steps < 1 || warmup < 0)
		return usage(argv[0], 2);
	const struct nn_backend *be = nn_backend_by_name(device);
	if (!be) {
		fprintf(stderr, "cuda_step: device '%s' unknown or unavailable\n", device);
		return 2;
	}
	struct error err;
#ifdef CAIRN_CUDA
	if (be->device == NN_DEV_CUDA) {
		enum nn_cuda_precision p;
		if (nn_cuda_parse_precision(precision, &p, &err) < 0 || nn_cuda_set_precision(p, &err) < 0) {
			fprintf(stderr, "cuda_step: %s\n", err.msg);
			return 2;
		}
	}
#endif
	if (be->device == NN_DEV_CPU)
		precision = "fp32";
	struct nn_net net;
	if (nn_model_build(&net, be, arch, channels, size, size, classes, 1, &err) < 0 ||
	    nn_net_prepare(&net, batch, &err) < 0) {
		fprintf(stderr, "cuda_step: %s\n", err.msg);
		return 1;
	}
	struct nn_optim opt;
	nn_optim_defaults(&opt);
	opt.lr = 1e-3f;
	if (nn_optim_init(&opt, &net, &err) < 0) {
		fprintf(stderr, "cuda_step: %s\n", err.msg);
		return 1;
	}
	struct nn_tensor *in = nn_net_input(&net);
	size_t nin = (size_t)batch * in->c * in->h * in->w;
	float *host = mem_alloc(nin * sizeof(float));
	if (!host) {
		fprintf(stderr, "cuda_step: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < nin; i++)
		host[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
	if (nn_tensor_upload(in, host, nin, &err) < 0) {
		fprintf(stderr, "cuda_step: %s\n", err.msg);
		return 1;
	}
	/* labels over the output's pixels, one per (sample, pixel) */
	const struct nn_tensor *y = nn_net_forward(&net, batch);
	int hw = y->h * y->w;
	size_t nl = (size_t)batch * hw;
	int32_t *labels = mem_alloc(nl * sizeof(int32_t)), *dlabels = be->alloc(nl * sizeof(int32_t));
	if (!labels || !dlabels) {
		fprintf(stderr, "cuda_step: out of memory for %zu labels\n", nl);
		return 1;
	}
	for (size_t i = 0; i < nl; i++)
		labels[i] = (int32_t)(i % (size_t)y->c);
	be->upload(dlabels, labels, nl * sizeof(int32_t));
	double t0 = 0;
	float loss = 0;
	for (int s = 0; s < warmup + steps; s++) {
		if (s == warmup) {
			be->sync();
			t0 = clock_now();
		}
		y = nn_net_forward(&net, batch);
		be->softmax_xent(batch, y->c, hw, y->data, dlabels, NULL, nn_net_output_grad(&net)->data,
				 &loss);
		nn_net_backward(&net);
		nn_optim_step(&opt, &net);
	}
	be->sync();
	double dt = (clock_now() - t0) / steps;
#ifdef CAIRN_CUDA
	if (be->device == NN_DEV_CUDA && nn_cuda_error(&err) < 0) {
		fprintf(stderr, "cuda_step: %s\n", err.msg);
		return 1;
	}
#endif
	printf("cairn %s %s %s batch %d %dx%dx%d: %.3f ms/step, %.0f images/s (loss %.4f)\n",
	       be->name, precision, net.arch, batch, channels, size, size, dt * 1e3, batch / dt,
	       (double)loss);
	be->free(dlabels);
	mem_free(labels), mem_free(host);
	nn_net_release(&net);
	return 0;
}
