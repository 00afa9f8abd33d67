package mapped

import "golang.org/x/sys/unix"

// populate maps the pages at once (they are about to be read in full), one
// call instead of a fault per few pages.
const populate = unix.MAP_POPULATE
