/*
 * hilog for native code, as OpenHarmony's NDK declares it (<hilog/log.h>): the same names,
 * signatures, enum values and macros, so C written for OpenHarmony compiles here.
 *
 * Privacy: `%{public}s` prints the argument; `%{private}s` and a bare `%s` print <private>
 * when the device's privacy switch is on (OpenHarmony's default), as hilog does.
 * Returns >= 0 on success, < 0 on failure.
 */
#ifndef HIVIEWDFX_HILOG_H
#define HIVIEWDFX_HILOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LOG_APP = 0,
} LogType;

typedef enum {
    LOG_DEBUG = 3,
    LOG_INFO = 4,
    LOG_WARN = 5,
    LOG_ERROR = 6,
    LOG_FATAL = 7,
} LogLevel;

#if defined(__clang__)
#define OXH_LOG_FORMAT(a, b) __attribute__((__format__(os_log, a, b)))
#else
#define OXH_LOG_FORMAT(a, b)
#endif

int OH_LOG_Print(LogType type, LogLevel level, unsigned int domain, const char *tag, const char *fmt, ...)
    OXH_LOG_FORMAT(5, 6);
int OH_LOG_VPrint(LogType type, LogLevel level, unsigned int domain, const char *tag, const char *fmt,
    va_list ap) OXH_LOG_FORMAT(5, 0);
int OH_LOG_PrintMsg(LogType type, LogLevel level, unsigned int domain, const char *tag, const char *message);
int OH_LOG_PrintMsgByLen(LogType type, LogLevel level, unsigned int domain, const char *tag, size_t tagLen,
    const char *message, size_t messageLen);
bool OH_LOG_IsLoggable(unsigned int domain, const char *tag, LogLevel level);

#ifndef LOG_DOMAIN
#define LOG_DOMAIN 0
#endif

#ifndef LOG_TAG
#define LOG_TAG NULL
#endif

#define OH_LOG_DEBUG(type, ...) ((void)OH_LOG_Print((type), LOG_DEBUG, LOG_DOMAIN, LOG_TAG, __VA_ARGS__))
#define OH_LOG_INFO(type, ...) ((void)OH_LOG_Print((type), LOG_INFO, LOG_DOMAIN, LOG_TAG, __VA_ARGS__))
#define OH_LOG_WARN(type, ...) ((void)OH_LOG_Print((type), LOG_WARN, LOG_DOMAIN, LOG_TAG, __VA_ARGS__))
#define OH_LOG_ERROR(type, ...) ((void)OH_LOG_Print((type), LOG_ERROR, LOG_DOMAIN, LOG_TAG, __VA_ARGS__))
#define OH_LOG_FATAL(type, ...) ((void)OH_LOG_Print((type), LOG_FATAL, LOG_DOMAIN, LOG_TAG, __VA_ARGS__))

#ifdef __cplusplus
}
#endif

#endif /* HIVIEWDFX_HILOG_H */
