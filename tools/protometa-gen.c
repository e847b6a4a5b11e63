/* protometa-gen.c - TEMPORARY bootstrap: emits an empty table. Replaced by the
 * real generator (reads a FileDescriptorSet) in the protojson work. */
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
    const char *name = "protometa";
    for (int i = 1; i < argc - 1; i++)
        if (strcmp(argv[i], "--name") == 0)
            name = argv[i + 1];
    printf("#include \"rpc/protojson.h\"\nconst protometa_table %s = {0};\n", name);
    return 0;
}
