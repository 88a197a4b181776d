/* A fast Modbus TCP server for the client benchmark (libmodbus): 1000
 * holding registers, one client at a time, as fast as the loop goes.
 * pymodbus's server tops out near 5-8k requests/s (measured on this kind of machine), too slow
 * to measure a client against. Usage: modbus_server PORT */
#include <errno.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 1502;
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
    modbus_mapping_t *map = modbus_mapping_new(0, 0, 1000, 0);
    if (!ctx || !map) return 1;
    for (int i = 0; i < 1000; i++) map->tab_registers[i] = (uint16_t)i;
    int listener = modbus_tcp_listen(ctx, 1);
    if (listener < 0) { perror("listen"); return 1; }
    printf("ready\n");
    fflush(stdout);
    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    for (;;) {
        if (modbus_tcp_accept(ctx, &listener) < 0) continue;
        for (;;) {
            int rc = modbus_receive(ctx, query);
            if (rc > 0) modbus_reply(ctx, query, rc, map);
            else if (rc < 0) break;
        }
        close(modbus_get_socket(ctx));
    }
}
