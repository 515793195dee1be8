/* tessera/version.h: the version of tessera, the one place it is written.
 *
 * meson reads this file (client/version.sh) for project()'s version, which becomes the
 * shared library's version and soversion, the pkg-config version, and what `tesserad
 * --version` and `tessera --version` print. To release, change the three numbers and the
 * string together; the build refuses to configure when they disagree.
 *
 * Semantic versioning: MAJOR changes when the ABI of libtessera breaks (it is the soversion);
 * MINOR when functions or struct fields are added (new fields take the room the public
 * structs keep for them: see their `reserved` members); PATCH for fixes.
 *
 * Self-contained: includes nothing, may be included from C or C++ and by the preprocessor
 * alone (#if TESSERA_VERSION_CHECK(0, 2, 0)). */
#ifndef TESSERA_VERSION_H
#define TESSERA_VERSION_H

#define TESSERA_VERSION_MAJOR 0
#define TESSERA_VERSION_MINOR 1
#define TESSERA_VERSION_PATCH 0
#define TESSERA_VERSION "0.1.0"

/* True when this header's version is at least major.minor.patch. */
#define TESSERA_VERSION_CHECK(major, minor, patch)                                          \
  (TESSERA_VERSION_MAJOR > (major) ||                                                       \
   (TESSERA_VERSION_MAJOR == (major) &&                                                     \
    (TESSERA_VERSION_MINOR > (minor) ||                                                     \
     (TESSERA_VERSION_MINOR == (minor) && TESSERA_VERSION_PATCH >= (patch)))))

#endif
