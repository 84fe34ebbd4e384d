/*
 * A native ability in C, built against the NDK's headers: <oxh/ability.h> (the ability
 * ABI) and <hilog/log.h> (OpenHarmony's hilog NDK API, unchanged).
 *
 *   cc -shared -fPIC -I crates/ndk/include -o libhello.so examples/hello-c/hello.c
 */
#include <oxh/ability.h>
#include <hilog/log.h>
#include <stdlib.h>
#include <string.h>

#undef LOG_DOMAIN
#undef LOG_TAG
#define LOG_DOMAIN 0x0002
#define LOG_TAG "HelloC"

typedef struct {
    const OxhHost *host;
    int foregrounds;
} Hello;

static void *on_create(const OxhHost *host, const OxhWant *want, int32_t reason)
{
    Hello *h = calloc(1, sizeof(Hello));
    if (h == NULL) {
        return NULL;
    }
    h->host = host;
    OH_LOG_INFO(LOG_APP, "MainAbility onCreate reason=%{public}d want=%{public}s", reason,
        want->json != NULL ? (strstr(want->json, "com.example.helloc") != NULL ? "ours" : "other") : "none");
    return h;
}

static void on_foreground(void *ability)
{
    Hello *h = ability;
    h->foregrounds++;
    OH_LOG_INFO(LOG_APP, "MainAbility onForeground %{public}d secret=%{private}s", h->foregrounds, "hidden");
}

static void on_background(void *ability)
{
    (void)ability;
    OH_LOG_INFO(LOG_APP, "MainAbility onBackground");
}

static void on_destroy(void *ability)
{
    OH_LOG_INFO(LOG_APP, "MainAbility onDestroy");
    free(ability);
}

static const OxhAbilityCallbacks MAIN = {
    .version = OXH_ABILITY_ABI_VERSION,
    .on_create = on_create,
    .on_foreground = on_foreground,
    .on_background = on_background,
    .on_destroy = on_destroy,
};

const OxhAbilityCallbacks *OxhAbility_Entry(const char *ability_name)
{
    if (ability_name != NULL && strcmp(ability_name, "MainAbility") == 0) {
        return &MAIN;
    }
    return NULL;
}
