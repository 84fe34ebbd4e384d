/*
 * The relational store from C, written as OpenHarmony's NDK guide for <database/rdb/relational_store.h>
 * shows it: open a store, create a table, insert rows with a values bucket, query them with
 * predicates and walk the cursor, update and delete, one committed and one rolled-back
 * transaction, close. Built by tests/rdb.rs with -Wall -Wextra -Werror against crates/ndk/include
 * and linked with liboxh_ndk.so; run as a native process it names its app in bundleName
 * (argv[1]). Prints what it sees; exits non-zero at the first unexpected result.
 */
#include <database/rdb/relational_store.h>
#include <database/rdb/relational_store_error_code.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(cond, ...)                  \
    do {                                  \
        if (!(cond)) {                    \
            fprintf(stderr, "FAIL: ");    \
            fprintf(stderr, __VA_ARGS__); \
            fprintf(stderr, "\n");        \
            exit(1);                      \
        }                                 \
    } while (0)

/* What the LOCAL_DETAILS observer saw, handed over from the library's thread. */
struct Seen {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    char table[64];
    int inserted;
    int64_t key;
};

static void on_change(void *context, const Rdb_ChangeInfo **infos, uint32_t count)
{
    struct Seen *seen = context;
    pthread_mutex_lock(&seen->lock);
    for (uint32_t i = 0; i < count; i++) {
        if (infos[i]->version != DISTRIBUTED_CHANGE_INFO_VERSION || infos[i]->ChangeType != RDB_DATA_CHANGE) {
            continue;
        }
        snprintf(seen->table, sizeof(seen->table), "%s", infos[i]->tableName);
        seen->inserted = infos[i]->inserted.count;
        if (infos[i]->inserted.count > 0 && infos[i]->inserted.type == TYPE_INT64) {
            seen->key = (int64_t)infos[i]->inserted.data[0].integer;
        }
    }
    seen->calls++;
    pthread_cond_signal(&seen->cond);
    pthread_mutex_unlock(&seen->lock);
}

static void print_rows(OH_Cursor *cursor)
{
    int rows = 0;
    CHECK(cursor->getRowCount(cursor, &rows) == RDB_OK, "getRowCount");
    int nameIndex = -1;
    CHECK(cursor->getColumnIndex(cursor, "NAME", &nameIndex) == RDB_OK, "getColumnIndex");
    printf("rows=%d\n", rows);
    while (cursor->goToNextRow(cursor) == RDB_OK) {
        int64_t id = 0;
        cursor->getInt64(cursor, 0, &id);
        size_t size = 0;
        cursor->getSize(cursor, nameIndex, &size);
        char name[size + 1];
        cursor->getText(cursor, nameIndex, name, size + 1);
        int64_t age = 0;
        cursor->getInt64(cursor, 2, &age);
        double salary = 0;
        cursor->getReal(cursor, 3, &salary);
        bool isNull = false;
        cursor->isNull(cursor, 4, &isNull);
        printf("row id=%lld name=%s age=%lld salary=%.1f codes=%s\n", (long long)id, name, (long long)age, salary,
            isNull ? "null" : "set");
    }
}

int main(int argc, char **argv)
{
    CHECK(argc == 2, "usage: rdb BUNDLE");
    OH_Rdb_Config config;
    memset(&config, 0, sizeof(config));
    config.selfSize = sizeof(OH_Rdb_Config);
    config.dataBaseDir = "/data/storage/el2/database";
    config.storeName = "RdbTest.db";
    config.bundleName = argv[1];
    config.moduleName = "entry";
    config.securityLevel = S1;
    config.isEncrypt = false;
    config.area = RDB_SECURITY_AREA_EL1;

    int errCode = 0;
    OH_Rdb_Store *store = OH_Rdb_GetOrOpen(&config, &errCode);
    CHECK(store != NULL && errCode == RDB_OK, "OH_Rdb_GetOrOpen: %d", errCode);
    printf("opened\n");

    char createTableSql[] = "CREATE TABLE IF NOT EXISTS EMPLOYEE (ID INTEGER PRIMARY KEY AUTOINCREMENT, NAME TEXT NOT NULL, "
                            "AGE INTEGER, SALARY REAL, CODES BLOB)";
    CHECK(OH_Rdb_Execute(store, createTableSql) == RDB_OK, "create table");

    OH_VBucket *valueBucket = OH_Rdb_CreateValuesBucket();
    valueBucket->putText(valueBucket, "NAME", "Lisa");
    valueBucket->putInt64(valueBucket, "AGE", 18);
    valueBucket->putReal(valueBucket, "SALARY", 100.5);
    uint8_t arr[] = {1, 2, 3, 4, 5};
    valueBucket->putBlob(valueBucket, "CODES", arr, sizeof(arr) / sizeof(arr[0]));
    int rowId = OH_Rdb_Insert(store, "EMPLOYEE", valueBucket);
    CHECK(rowId == 1, "insert Lisa: %d", rowId);
    valueBucket->clear(valueBucket);
    valueBucket->putText(valueBucket, "NAME", "Rose");
    valueBucket->putInt64(valueBucket, "AGE", 22);
    valueBucket->putReal(valueBucket, "SALARY", 200.5);
    valueBucket->putNull(valueBucket, "CODES");
    rowId = OH_Rdb_Insert(store, "EMPLOYEE", valueBucket);
    CHECK(rowId == 2, "insert Rose: %d", rowId);
    printf("inserted %d\n", rowId);
    // A NULL bucket is refused, not dereferenced.
    CHECK(OH_Rdb_Insert(store, "EMPLOYEE", NULL) == RDB_E_INVALID_ARGS, "insert NULL");
    // SQLite's errors come back as the NDK's codes: NAME is NOT NULL.
    OH_VBucket *noName = OH_Rdb_CreateValuesBucket();
    noName->putInt64(noName, "AGE", 1);
    int rc = OH_Rdb_Insert(store, "EMPLOYEE", noName);
    CHECK(rc == RDB_E_SQLITE_CONSTRAINT, "insert without NAME: %d", rc);
    noName->destroy(noName);
    printf("constraint %d\n", rc);

    // Query with predicates: AGE > 10 AND NAME LIKE '%s%' (both), ordered by AGE descending.
    OH_Predicates *predicates = OH_Rdb_CreatePredicates("EMPLOYEE");
    OH_VObject *valueObject = OH_Rdb_CreateValueObject();
    int64_t ten = 10;
    valueObject->putInt64(valueObject, &ten, 1);
    predicates->greaterThan(predicates, "AGE", valueObject)->andOperate(predicates);
    OH_VObject *pattern = OH_Rdb_CreateValueObject();
    pattern->putText(pattern, "%s%");
    predicates->like(predicates, "NAME", pattern)->orderBy(predicates, "AGE", DESC);
    const char *columnNames[] = {"ID", "NAME", "AGE", "SALARY", "CODES"};
    int len = sizeof(columnNames) / sizeof(columnNames[0]);
    OH_Cursor *cursor = OH_Rdb_Query(store, predicates, columnNames, len);
    CHECK(cursor != NULL, "query");
    int columnCount = 0;
    cursor->getColumnCount(cursor, &columnCount);
    char columnName[16];
    CHECK(cursor->getColumnName(cursor, 1, columnName, sizeof(columnName)) == RDB_OK, "getColumnName");
    printf("columns=%d second=%s\n", columnCount, columnName);
    print_rows(cursor);
    CHECK(cursor->goToNextRow(cursor) == RDB_E_STEP_RESULT_IS_AFTER_LAST, "past the last row");
    cursor->destroy(cursor);

    // between and in, with values arrays.
    OH_Predicates *between = OH_Rdb_CreatePredicates("EMPLOYEE");
    OH_VObject *range = OH_Rdb_CreateValueObject();
    int64_t bounds[] = {20, 30};
    range->putInt64(range, bounds, 2);
    between->between(between, "AGE", range);
    OH_Cursor *c2 = OH_Rdb_Query(store, between, NULL, 0);
    CHECK(c2 != NULL, "query between");
    print_rows(c2);
    c2->destroy(c2);

    // Update Lisa's salary, in a transaction that commits.
    CHECK(OH_Rdb_BeginTransaction(store) == RDB_OK, "begin");
    // The store opened again is another handle: its transaction meets the open one.
    OH_Rdb_Store *again = OH_Rdb_GetOrOpen(&config, &errCode);
    CHECK(again != NULL && errCode == RDB_OK, "open again: %d", errCode);
    rc = OH_Rdb_BeginTransaction(again);
    CHECK(rc == RDB_E_SQLITE_BUSY, "second write transaction: %d", rc);
    printf("busy %d\n", rc);
    CHECK(OH_Rdb_CloseStore(again) == RDB_OK, "close again");
    OH_Predicates *lisa = OH_Rdb_CreatePredicates("EMPLOYEE");
    OH_VObject *name = OH_Rdb_CreateValueObject();
    name->putText(name, "Lisa");
    lisa->equalTo(lisa, "NAME", name);
    valueBucket->clear(valueBucket);
    valueBucket->putReal(valueBucket, "SALARY", 300.0);
    int changed = OH_Rdb_Update(store, valueBucket, lisa);
    CHECK(changed == 1, "update: %d", changed);
    CHECK(OH_Rdb_Commit(store) == RDB_OK, "commit");
    printf("updated %d\n", changed);

    // Delete Rose in a transaction that rolls back: she stays.
    CHECK(OH_Rdb_BeginTransaction(store) == RDB_OK, "begin 2");
    OH_Predicates *rose = OH_Rdb_CreatePredicates("EMPLOYEE");
    OH_VObject *ids = OH_Rdb_CreateValueObject();
    int64_t roseIds[] = {2, 99};
    ids->putInt64(ids, roseIds, 2);
    rose->in(rose, "ID", ids);
    int deleted = OH_Rdb_Delete(store, rose);
    CHECK(deleted == 1, "delete: %d", deleted);
    CHECK(OH_Rdb_RollBack(store) == RDB_OK, "rollback");
    printf("rolled back delete of %d\n", deleted);

    OH_Cursor *all = OH_Rdb_ExecuteQuery(store, "SELECT ID, NAME, AGE, SALARY, CODES FROM EMPLOYEE ORDER BY ID");
    CHECK(all != NULL, "executeQuery");
    print_rows(all);
    all->destroy(all);
    CHECK(OH_Rdb_ExecuteQuery(store, NULL) == NULL, "executeQuery NULL");

    const char *tables[] = {"EMPLOYEE"};
    Rdb_DistributedConfig distributed = {.version = DISTRIBUTED_CONFIG_VERSION, .isAutoSync = false};
    CHECK(OH_Rdb_SetDistributedTables(store, tables, 1, RDB_DISTRIBUTED_CLOUD, &distributed) == RDB_OK,
        "setDistributedTables");
    printf("distributed\n");

    // Observe this device's committed changes: an insert arrives with its key.
    static struct Seen seen = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, "", 0, 0};
    Rdb_DataObserver observer = {.context = &seen, .callback.detailsObserver = on_change};
    CHECK(OH_Rdb_Subscribe(store, RDB_SUBSCRIBE_TYPE_CLOUD, &observer) == RDB_E_NOT_SUPPORTED, "cloud");
    CHECK(OH_Rdb_Subscribe(store, RDB_SUBSCRIBE_TYPE_LOCAL_DETAILS, &observer) == RDB_OK, "subscribe");
    valueBucket->clear(valueBucket);
    valueBucket->putInt64(valueBucket, "ID", 3);
    valueBucket->putText(valueBucket, "NAME", "Tom");
    rowId = OH_Rdb_Insert(store, "EMPLOYEE", valueBucket);
    CHECK(rowId == 3, "insert Tom: %d", rowId);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&seen.lock);
    while (seen.calls == 0) {
        CHECK(pthread_cond_timedwait(&seen.cond, &seen.lock, &until) == 0, "no change event within 10 s");
    }
    printf("observed table=%s inserted=%d key=%lld\n", seen.table, seen.inserted, (long long)seen.key);
    pthread_mutex_unlock(&seen.lock);
    CHECK(OH_Rdb_Unsubscribe(store, RDB_SUBSCRIBE_TYPE_LOCAL_DETAILS, &observer) == RDB_OK, "unsubscribe");
    OH_Predicates *tom = OH_Rdb_CreatePredicates("EMPLOYEE");
    OH_VObject *tomId = OH_Rdb_CreateValueObject();
    int64_t three = 3;
    tomId->putInt64(tomId, &three, 1);
    tom->equalTo(tom, "ID", tomId);
    CHECK(OH_Rdb_Delete(store, tom) == 1, "delete Tom");
    tom->destroy(tom);
    tomId->destroy(tomId);
    printf("unsubscribed\n");

    valueObject->destroy(valueObject);
    pattern->destroy(pattern);
    range->destroy(range);
    name->destroy(name);
    ids->destroy(ids);
    predicates->destroy(predicates);
    between->destroy(between);
    lisa->destroy(lisa);
    rose->destroy(rose);
    valueBucket->destroy(valueBucket);
    CHECK(OH_Rdb_CloseStore(store) == RDB_OK, "close");
    printf("closed\n");
    return 0;
}
