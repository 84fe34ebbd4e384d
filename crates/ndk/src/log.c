/*
 * libhilog_ndk.z.so: OpenHarmony's hilog NDK functions. The variadic part of OH_LOG_Print: walks the format's conversions, takes each argument
 * from the va_list by its type, and hands the format (privacy marks and all) with typed
 * arguments to the Rust side, which sends them to the hilog service; the service formats
 * and masks, so C and Rust apps log alike.
 */
#include <hilog/log.h>
#include <stdint.h>
#include <string.h>

/* Must match `LogArgC` in lib.rs. */
typedef struct {
    uint8_t kind; /* 0 int, 1 uint, 2 float, 3 string */
    int64_t i;
    uint64_t u;
    double f;
    const char *s;
} OxhLogArg;

#define OXH_MAX_ARGS 32

int oxh_ndk_log_args(int type, int level, unsigned int domain, const char *tag, const char *fmt,
    const OxhLogArg *args, size_t n);

int OH_LOG_VPrint(LogType type, LogLevel level, unsigned int domain, const char *tag, const char *fmt,
    va_list ap)
{
    OxhLogArg args[OXH_MAX_ARGS];
    size_t n = 0;
    if (fmt == NULL) {
        return -1;
    }
    for (const char *p = fmt; *p != '\0'; p++) {
        if (*p != '%') {
            continue;
        }
        p++;
        if (*p == '%') {
            continue;
        }
        if (*p == '{') { /* {public} / {private} */
            while (*p != '\0' && *p != '}') {
                p++;
            }
            if (*p == '\0') {
                break;
            }
            p++;
        }
        while (*p != '\0' && strchr("-+ #0", *p) != NULL) {
            p++;
        }
        if (*p == '*') { /* a width argument: taken, not printed */
            (void)va_arg(ap, int);
            p++;
        }
        while (*p >= '0' && *p <= '9') {
            p++;
        }
        if (*p == '.') {
            p++;
            if (*p == '*') {
                (void)va_arg(ap, int);
                p++;
            }
            while (*p >= '0' && *p <= '9') {
                p++;
            }
        }
        int longs = 0;
        int size_t_len = 0;
        int long_double = 0;
        while (*p != '\0' && strchr("hlLqjzt", *p) != NULL) {
            if (*p == 'l' || *p == 'q') {
                longs++;
            } else if (*p == 'z' || *p == 'j' || *p == 't') {
                size_t_len = 1;
            } else if (*p == 'L') {
                long_double = 1;
            }
            p++;
        }
        if (*p == '\0' || n == OXH_MAX_ARGS) {
            break;
        }
        OxhLogArg a = {0};
        switch (*p) {
        case 'd':
        case 'i':
            a.kind = 0;
            a.i = longs >= 2 ? va_arg(ap, long long) : (longs == 1 || size_t_len) ? va_arg(ap, long) : va_arg(ap, int);
            break;
        case 'u':
        case 'x':
        case 'X':
        case 'o':
        case 'c':
            a.kind = 1;
            a.u = longs >= 2 ? va_arg(ap, unsigned long long)
                : (longs == 1 || size_t_len) ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
            break;
        case 'p':
            a.kind = 1;
            a.u = (uint64_t)(uintptr_t)va_arg(ap, void *);
            break;
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G':
        case 'a':
        case 'A':
            a.kind = 2;
            a.f = long_double ? (double)va_arg(ap, long double) : va_arg(ap, double);
            break;
        case 's':
            a.kind = 3;
            a.s = va_arg(ap, const char *);
            break;
        default:
            /* An unknown conversion: the rest of the arguments cannot be read safely. */
            return oxh_ndk_log_args((int)type, (int)level, domain, tag, fmt, args, n);
        }
        args[n++] = a;
    }
    return oxh_ndk_log_args((int)type, (int)level, domain, tag, fmt, args, n);
}

int OH_LOG_Print(LogType type, LogLevel level, unsigned int domain, const char *tag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = OH_LOG_VPrint(type, level, domain, tag, fmt, ap);
    va_end(ap);
    return r;
}

int OH_LOG_PrintMsg(LogType type, LogLevel level, unsigned int domain, const char *tag, const char *message)
{
    OxhLogArg a = {0};
    a.kind = 3;
    a.s = message;
    return oxh_ndk_log_args((int)type, (int)level, domain, tag, "%{public}s", &a, 1);
}

int OH_LOG_PrintMsgByLen(LogType type, LogLevel level, unsigned int domain, const char *tag, size_t tagLen,
    const char *message, size_t messageLen)
{
    char t[64];
    char m[4096];
    size_t tl = tagLen < sizeof(t) - 1 ? tagLen : sizeof(t) - 1;
    size_t ml = messageLen < sizeof(m) - 1 ? messageLen : sizeof(m) - 1;
    if (tag != NULL) {
        memcpy(t, tag, tl);
    } else {
        tl = 0;
    }
    t[tl] = '\0';
    if (message != NULL) {
        memcpy(m, message, ml);
    } else {
        ml = 0;
    }
    m[ml] = '\0';
    return OH_LOG_PrintMsg(type, level, domain, t, m);
}

bool OH_LOG_IsLoggable(unsigned int domain, const char *tag, LogLevel level)
{
    (void)domain;
    (void)tag;
    /* Every valid level is; the daemon applies its own level filters. */
    return level >= LOG_DEBUG && level <= LOG_FATAL;
}
