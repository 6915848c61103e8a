/* model: spec parsing and the builders of each family. */
#include "nn/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/mem.h"

#define MAX_LIST 8

/* One option of a family: name, default, and the parsed value. */
struct opt {
	const char *key;
	const char *dflt;
	int is_list;
	double v[MAX_LIST];
	int n;
};

static int opt_parse_value(struct opt *o, const char *spec, const char *s, size_t len,
			   struct error *err)
{
	o->n = 0;
	const char *p = s, *end = s + len;
	while (p < end) {
		if (o->n == MAX_LIST)
			return error_set(err, "arch '%s': %s: more than %d values", spec, o->key, MAX_LIST);
		char *q;
		errno = 0;
		double v = strtod(p, &q);
		if (q == p || errno || (q < end && *q != '-'))
			return error_set(err, "arch '%s': %s: '%.*s' is not a number%s", spec, o->key,
					 (int)len, s, o->is_list ? " list (like 32-64-128)" : "");
		o->v[o->n++] = v;
		p = q < end ? q + 1 : q;
	}
	if (o->n == 0 || (!o->is_list && o->n != 1))
		return error_set(err, "arch '%s': %s: expected %s, got '%.*s'", spec, o->key,
				 o->is_list ? "a list like 32-64" : "one number", (int)len, s);
	return 0;
}

/* Fill opts from defaults, then from "k=v,k=v" after the colon. */
static int opts_parse(const char *spec, const char *args, struct opt *opts, int nopts,
		      struct error *err)
{
	for (int i = 0; i < nopts; i++)
		if (opt_parse_value(&opts[i], spec, opts[i].dflt, strlen(opts[i].dflt), err) < 0)
			return -1;
	const char *p = args;
	while (p && *p) {
		const char *comma = strchr(p, ','), *eq = strchr(p, '=');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (!eq || eq > p + len)
			return error_set(err, "arch '%s': option '%.*s' is not key=value", spec, (int)len, p);
		int i;
		for (i = 0; i < nopts; i++)
			if (strlen(opts[i].key) == (size_t)(eq - p) && !strncmp(opts[i].key, p, eq - p))
				break;
		if (i == nopts) {
			struct buf known = BUF_INIT;
			for (int k = 0; k < nopts; k++)
				buf_addf(&known, "%s%s", k ? ", " : "", opts[k].key);
			error_set(err, "arch '%s': unknown key '%.*s' (known: %s)", spec, (int)(eq - p), p,
				  buf_str(&known));
			buf_release(&known);
			return -1;
		}
		if (opt_parse_value(&opts[i], spec, eq + 1, p + len - eq - 1, err) < 0)
			return -1;
		p = comma ? comma + 1 : NULL;
	}
	return 0;
}

static int opt_int(const struct opt *o, int i) { return (int)o->v[i < o->n ? i : o->n - 1]; }

/* The canonical spec: family:key=value,... with every option. */
static char *opts_canonical(const char *family, const struct opt *opts, int nopts)
{
	struct buf b = BUF_INIT;
	buf_addf(&b, "%s:", family);
	for (int i = 0; i < nopts; i++) {
		buf_addf(&b, "%s%s=", i ? "," : "", opts[i].key);
		for (int k = 0; k < opts[i].n; k++)
			buf_addf(&b, "%s%g", k ? "-" : "", opts[i].v[k]);
	}
	if (b.failed) {
		buf_release(&b);
		return NULL;
	}
	return buf_detach(&b);
}

static int conv_bn_act(struct nn_net *net, int x, int cout, int k, int stride, int groups,
		       enum nn_act act)
{
	x = nn_conv(net, x, cout, k, stride, k / 2, 1, groups, 0);
	x = nn_bn(net, x);
	return act == NN_ACT_NONE ? x : nn_act(net, x, act, 0);
}

/* cnn: for each width, `convs` x [conv3x3-BN-ReLU] then 2x2 max pool; then
 * dropout, a hidden linear layer (fc > 0) with ReLU and dropout, and the
 * classifier. */
static int build_cnn(struct nn_net *net, struct opt *o, int nout, struct error *err)
{
	(void)err; /* its failures are the net's (net->failed) */
	int x = 0;
	for (int s = 0; s < o[0].n; s++) {
		for (int k = 0; k < opt_int(&o[1], 0); k++)
			x = conv_bn_act(net, x, opt_int(&o[0], s), 3, 1, 1, NN_ACT_RELU);
		x = nn_pool(net, x, NN_POOL_MAX, 2, 2, 0);
	}
	float drop = (float)o[3].v[0];
	if (drop > 0)
		x = nn_dropout(net, x, drop);
	if (opt_int(&o[2], 0) > 0) {
		x = nn_linear(net, x, opt_int(&o[2], 0), 1);
		x = nn_act(net, x, NN_ACT_RELU, 0);
		if (drop > 0)
			x = nn_dropout(net, x, drop);
	}
	return nn_linear(net, x, nout, 1);
}

/* resnet: stem, then stages of residual blocks (He et al. 2016); with
 * bottleneck = r > 0, blocks are 1x1 (width/r) - 3x3 grouped (width/r) -
 * 1x1 (width) as in ResNeXt (Xie et al. 2017), else two 3x3 convs. The first
 * block of every stage after the first halves the resolution. */
static int build_resnet(struct nn_net *net, struct opt *o, int nout, struct error *err)
{
	(void)err; /* its failures are the net's (net->failed) */
	const struct opt *depths = &o[0], *widths = &o[1];
	int groups = opt_int(&o[2], 0), ratio = opt_int(&o[3], 0), stem = opt_int(&o[4], 0);
	int x = 0;
	if (net->nodes[0].h >= 64) { /* ImageNet-style stem for large inputs */
		x = conv_bn_act(net, x, stem, 7, 2, 1, NN_ACT_RELU);
		x = nn_pool(net, x, NN_POOL_MAX, 3, 2, 1);
	} else {
		x = conv_bn_act(net, x, stem, 3, 1, 1, NN_ACT_RELU);
	}
	int cin = stem;
	for (int s = 0; s < depths->n; s++) {
		int width = opt_int(widths, s);
		for (int b = 0; b < opt_int(depths, s); b++) {
			int stride = s > 0 && b == 0 ? 2 : 1, y;
			if (ratio > 0) {
				int mid = width / ratio;
				y = conv_bn_act(net, x, mid, 1, 1, 1, NN_ACT_RELU);
				y = conv_bn_act(net, y, mid, 3, stride, groups, NN_ACT_RELU);
				y = conv_bn_act(net, y, width, 1, 1, 1, NN_ACT_NONE);
			} else {
				y = conv_bn_act(net, x, width, 3, stride, groups, NN_ACT_RELU);
				y = conv_bn_act(net, y, width, 3, 1, groups, NN_ACT_NONE);
			}
			int sc = x;
			if (stride != 1 || cin != width)
				sc = conv_bn_act(net, x, width, 1, stride, 1, NN_ACT_NONE);
			x = nn_act(net, nn_add(net, y, sc), NN_ACT_RELU, 0);
			cin = width;
		}
	}
	x = nn_gap(net, x);
	return nn_linear(net, x, nout, 1);
}

/* unet (Ronneberger et al. 2015): `depth` downsamplings, widths base 2^l,
 * two conv3x3-BN-ReLU per level, 2x2 transposed conv (up=0) or bilinear
 * upsampling + conv3x3 (up=1) on the way up, skip concatenation, 1x1 head. */
static int build_unet(struct nn_net *net, struct opt *o, int nout, struct error *err)
{
	int depth = opt_int(&o[0], 0), base = opt_int(&o[1], 0), bilinear = opt_int(&o[2], 0);
	int skip[16], x = 0;
	if (depth < 1 || depth > 15)
		return error_set(err, "depth %d: want 1..15 (halvings of the tile)", depth);
	for (int l = 0; l <= depth; l++) {
		if (l > 0)
			x = nn_pool(net, x, NN_POOL_MAX, 2, 2, 0);
		x = conv_bn_act(net, x, base << l, 3, 1, 1, NN_ACT_RELU);
		x = conv_bn_act(net, x, base << l, 3, 1, 1, NN_ACT_RELU);
		skip[l] = x;
	}
	for (int l = depth - 1; l >= 0; l--) {
		if (bilinear) {
			x = nn_upsample(net, x, NN_UP_BILINEAR, 2);
			x = conv_bn_act(net, x, base << l, 3, 1, 1, NN_ACT_RELU);
		} else {
			x = nn_deconv(net, x, base << l, 2, 2, 0, 1);
		}
		x = nn_concat(net, x, skip[l]);
		x = conv_bn_act(net, x, base << l, 3, 1, 1, NN_ACT_RELU);
		x = conv_bn_act(net, x, base << l, 3, 1, 1, NN_ACT_RELU);
	}
	return nn_conv(net, x, nout, 1, 1, 0, 1, 1, 1);
}

static int conv_in_act(struct nn_net *net, int x, int cout, int k, int stride, int pad,
		       enum nn_act act, float alpha)
{
	x = nn_conv(net, x, cout, k, stride, pad, 1, 1, 0);
	x = nn_inorm(net, x);
	return act == NN_ACT_NONE ? x : nn_act(net, x, act, alpha);
}

/* cyclegan generator (Zhu et al. 2017, appendix 7.2): c7s1-base, d(2 base),
 * d(4 base), `blocks` residual blocks, u(2 base), u(base), c7s1-out, tanh.
 * Zero padding instead of reflection; up-sampling by 4x4 stride-2 transposed
 * convs (exact doubling). */
static int build_cyclegan(struct nn_net *net, struct opt *o, int nout, struct error *err)
{
	(void)err; /* its failures are the net's (net->failed) */
	int base = opt_int(&o[0], 0), blocks = opt_int(&o[1], 0), down = opt_int(&o[2], 0);
	int x = conv_in_act(net, 0, base, 7, 1, 3, NN_ACT_RELU, 0), w = base;
	for (int i = 0; i < down; i++) {
		w *= 2;
		x = conv_in_act(net, x, w, 3, 2, 1, NN_ACT_RELU, 0);
	}
	for (int b = 0; b < blocks; b++) {
		int y = conv_in_act(net, x, w, 3, 1, 1, NN_ACT_RELU, 0);
		y = conv_in_act(net, y, w, 3, 1, 1, NN_ACT_NONE, 0);
		x = nn_add(net, x, y);
	}
	for (int i = 0; i < down; i++) {
		w /= 2;
		x = nn_deconv(net, x, w, 4, 2, 1, 0);
		x = nn_inorm(net, x);
		x = nn_act(net, x, NN_ACT_RELU, 0);
	}
	x = nn_conv(net, x, nout, 7, 1, 3, 1, 1, 1);
	return nn_act(net, x, NN_ACT_TANH, 0);
}

/* patchgan discriminator (Isola et al. 2017, 70x70 for layers = 3): C64 without
 * norm, then C128, C256 (stride 2), C512 (stride 1), each 4x4 + IN + LeakyReLU
 * 0.2, then a 4x4 conv to one logit per patch. */
static int build_patchgan(struct nn_net *net, struct opt *o, int nout, struct error *err)
{
	(void)err; /* its failures are the net's (net->failed) */
	(void)nout;
	int base = opt_int(&o[0], 0), layers = opt_int(&o[1], 0);
	int x = nn_conv(net, 0, base, 4, 2, 1, 1, 1, 1), w = base;
	x = nn_act(net, x, NN_ACT_LEAKY, 0.2f);
	for (int i = 1; i <= layers; i++) {
		w = base << (i < 3 ? i : 3);
		x = conv_in_act(net, x, w, 4, i < layers ? 2 : 1, 1, NN_ACT_LEAKY, 0.2f);
	}
	return nn_conv(net, x, 1, 4, 1, 1, 1, 1, 1);
}

struct family {
	const char *name;
	int (*build)(struct nn_net *net, struct opt *o, int nout, struct error *err);
	struct opt opts[6];
	int nopts;
};

#define O(k, d, l) {.key = k, .dflt = d, .is_list = l}
static const struct family families[] = {
	{"cnn", build_cnn,
	 {O("widths", "32-64", 1), O("convs", "1", 0), O("fc", "128", 0), O("drop", "0.25", 0)}, 4},
	{"resnet", build_resnet,
	 {O("depths", "2-2-2", 1), O("widths", "32-64-128", 1), O("groups", "1", 0),
	  O("bottleneck", "0", 0), O("stem", "32", 0)}, 5},
	{"resnext", build_resnet,
	 {O("depths", "1-1-1", 1), O("widths", "64-128-256", 1), O("groups", "8", 0),
	  O("bottleneck", "2", 0), O("stem", "32", 0)}, 5},
	{"unet", build_unet, {O("depth", "4", 0), O("base", "16", 0), O("bilinear", "0", 0)}, 3},
	{"cyclegan", build_cyclegan, {O("base", "64", 0), O("blocks", "9", 0), O("down", "2", 0)}, 3},
	{"patchgan", build_patchgan, {O("base", "64", 0), O("layers", "3", 0)}, 2},
};

/* The family of spec and its options (defaults filled in, values checked). */
static const struct family *spec_parse(const char *spec, struct opt *opts, struct error *err)
{
	const char *colon = strchr(spec, ':');
	size_t flen = colon ? (size_t)(colon - spec) : strlen(spec);
	const struct family *fam = NULL;
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
		if (strlen(families[i].name) == flen && !strncmp(families[i].name, spec, flen))
			fam = &families[i];
	if (!fam)
		return error_set(err, "arch '%s': unknown family '%.*s' (known: cnn, resnet, resnext, unet, cyclegan, patchgan)",
				 spec, (int)flen, spec), NULL;
	memcpy(opts, fam->opts, sizeof(fam->opts));
	if (opts_parse(spec, colon ? colon + 1 : NULL, opts, fam->nopts, err) < 0)
		return NULL;
	for (int i = 0; i < fam->nopts; i++)
		for (int k = 0; k < opts[i].n; k++)
			if (opts[i].v[k] < 0 || (strcmp(opts[i].key, "drop") && opts[i].v[k] != (int)opts[i].v[k]))
				return error_set(err, "arch '%s': %s: bad value %g", spec, opts[i].key,
						 opts[i].v[k]), NULL;
	if (!strcmp(fam->name, "cnn") && !(opts[3].v[0] < 1))
		return error_set(err, "arch '%s': drop must be below 1", spec), NULL;
	return fam;
}

int nn_model_size_multiple(const char *spec, struct error *err)
{
	struct opt opts[6];
	const struct family *fam = spec_parse(spec, opts, err);
	if (!fam)
		return -1;
	int levels = !strcmp(fam->name, "unet") ? opt_int(&opts[0], 0)
		     : !strcmp(fam->name, "cyclegan") ? opt_int(&opts[2], 0)
						       : -1;
	if (levels < 0)
		return 0;
	if (levels > 15)
		return error_set(err, "arch '%s': %d levels of downsampling, at most 15", spec, levels);
	return 1 << levels;
}

int nn_model_build(struct nn_net *net, const struct nn_backend *be, const char *spec, int c, int h,
		   int w, int nout, uint64_t seed, struct error *err)
{
	struct opt opts[6];
	const struct family *fam = spec_parse(spec, opts, err);
	if (!fam)
		return -1;
	if (nout <= 0)
		return error_set(err, "arch '%s': %d outputs", spec, nout);
	if (nn_net_init(net, be, c, h, w, seed, err) < 0)
		return -1;
	if (fam->build(net, opts, nout, err) < 0 && !net->failed) {
		nn_net_release(net);
		error_prefix(err, "arch '%s': ", spec);
		return -1;
	}
	if (nn_net_finish(net, err) < 0) {
		error_prefix(err, "arch '%s' on %dx%dx%d input: ", spec, c, h, w);
		nn_net_release(net);
		return -1;
	}
	net->arch = opts_canonical(fam->name, opts, fam->nopts);
	if (!net->arch) {
		nn_net_release(net);
		return error_set(err, "arch: out of memory");
	}
	return 0;
}

void nn_model_summary(const struct nn_net *net, char *out, size_t size)
{
	snprintf(out, size, "%s: %.3f M params, %.4f GFLOP per sample (forward)",
		 net->arch ? net->arch : "net", nn_net_param_count(net) / 1e6,
		 2 * nn_net_macs(net) / 1e9);
}
