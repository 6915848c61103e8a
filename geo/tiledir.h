/* tiledir: the tiles present in a DIR/Z/X/Y.EXT tree, so that a stage can
 * work on exactly the tiles another stage wrote (labels like the imagery). */
#ifndef GEO_TILEDIR_H
#define GEO_TILEDIR_H

#include <stddef.h>

#include "core/error.h"
#include "geo/tile.h"

/* Every DIR/Z/X/Y.ext at zoom *z (*z < 0: the only zoom folder there, which
 * is stored in *z), sorted north to south, west to east. Free *tiles with
 * mem_free. -1 when the folder is missing, has several zooms and *z < 0, or
 * holds no tile. */
int tiledir_list(const char *dir, const char *ext, int *z, struct tile **tiles, size_t *n,
		 struct error *err);

#endif
