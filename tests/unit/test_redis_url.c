/* tests/unit/test_redis_url.c: --store redis URLs (sidecar/store/redis/url.c): every form the
 * README lists parses to what it names; malformed ones are refused with a reason that holds no
 * secret; the password's sources in order (URL, TESSERA_REDIS_PASSWORD, the file); logs see the
 * URL with the password masked. */
#include "redis.h"
#include "tt.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void parses_every_form(void) {
  rb_url u;
  const char *why;
  unsetenv("TESSERA_REDIS_PASSWORD");
  TT_EQ_INT(rb_url_parse(&u, "redis+unix:///run/redis/redis.sock", "", &why), 0);
  TT_EQ_INT(u.mode, RB_UNIX);
  TT_EQ_STR(u.path, "/run/redis/redis.sock");
  TT_EQ_INT(u.db, 0);
  TT_EQ_INT(rb_url_parse(&u, "redis+unix:///tmp/r.sock?db=3", "", &why), 0);
  TT_EQ_INT(u.db, 3);
  TT_EQ_INT(rb_url_parse(&u, "redis://cache.local:6380/2", "", &why), 0);
  TT_EQ_INT(u.mode, RB_TCP);
  TT_EQ_STR(u.addr.host, "cache.local");
  TT_EQ_INT(u.addr.port, 6380);
  TT_EQ_INT(u.db, 2);
  TT_EQ_INT(rb_url_parse(&u, "redis://app:s3cret@10.0.0.1:6379", "", &why), 0);
  TT_EQ_STR(u.user, "app");
  TT_EQ_STR(u.password, "s3cret");
  TT_EQ_INT(rb_url_parse(&u, "redis://:only-pass@[::1]:6379", "", &why), 0);
  TT_EQ_STR(u.user, "");
  TT_EQ_STR(u.password, "only-pass");
  TT_EQ_STR(u.addr.host, "::1");
  TT_EQ_INT(rb_url_parse(&u, "redis-sentinel://s1:26379,s2:26380,10.0.0.3:26381/mymaster", "",
                         &why), 0);
  TT_EQ_INT(u.mode, RB_SENTINEL);
  TT_EQ_INT(u.n_sentinels, 3);
  TT_EQ_STR(u.sentinels[1].host, "s2");
  TT_EQ_INT(u.sentinels[2].port, 26381);
  TT_EQ_STR(u.master, "mymaster");
}

static void refuses_malformed_urls_without_echoing_them(void) {
  static const char *bad[] = {
      "redis://", "redis://host", "redis://host:0", "redis://host:99999", "redis://host:6379/x",
      "redis://user@host:6379", "redis+unix://relative.sock", "redis+unix:///r.sock?x=1",
      "redis-sentinel://s1:26379", "redis-sentinel:///m", "rediss://host:6379", "mysql://x",
      "redis://:hunter2-secret@host"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    rb_url u;
    const char *why = NULL;
    TT_ASSERT_MSG(rb_url_parse(&u, bad[i], "", &why) == TS_ECONFIG, "accepted %s", bad[i]);
    TT_ASSERT(why != NULL && strstr(why, "hunter2") == NULL);
  }
}

static void password_sources_in_order(void) {
  char path[] = "/tmp/tessera-pw.XXXXXX";
  int fd = mkstemp(path);
  TT_ASSERT(fd >= 0);
  TT_ASSERT(write(fd, "from-file\nignored\n", 18) == 18);
  close(fd);
  rb_url u;
  const char *why;
  unsetenv("TESSERA_REDIS_PASSWORD");
  TT_EQ_INT(rb_url_parse(&u, "redis://h:1", path, &why), 0);
  TT_EQ_STR(u.password, "from-file");
  setenv("TESSERA_REDIS_PASSWORD", "from-env", 1);
  TT_EQ_INT(rb_url_parse(&u, "redis://h:1", path, &why), 0);
  TT_EQ_STR(u.password, "from-env");
  TT_EQ_INT(rb_url_parse(&u, "redis://:from-url@h:1", path, &why), 0);
  TT_EQ_STR(u.password, "from-url");
  unsetenv("TESSERA_REDIS_PASSWORD");
  TT_EQ_INT(rb_url_parse(&u, "redis://h:1", "/nonexistent/pw", &why), TS_ECONFIG);
  unlink(path);
}

static void logs_see_the_password_masked(void) {
  char out[256];
  rb_url_masked("redis://app:s3cret@10.0.0.1:6379/1", out, sizeof(out));
  TT_EQ_STR(out, "redis://app:***@10.0.0.1:6379/1");
  rb_url_masked("redis://:s3cret@h:1", out, sizeof(out));
  TT_EQ_STR(out, "redis://:***@h:1");
  rb_url_masked("redis-sentinel://:pw@s1:1,s2:2/m", out, sizeof(out));
  TT_EQ_STR(out, "redis-sentinel://:***@s1:1,s2:2/m");
  rb_url_masked("redis+unix:///r.sock", out, sizeof(out));
  TT_EQ_STR(out, "redis+unix:///r.sock");
}

static const tt_case cases[] = {
    TT_CASE(parses_every_form),
    TT_CASE(refuses_malformed_urls_without_echoing_them),
    TT_CASE(password_sources_in_order),
    TT_CASE(logs_see_the_password_masked),
};
TT_MAIN(cases)
