#include <iostream>

#include "cli.hpp"

int main(int argc, char** argv) { return lsattn::cli::main(argc, argv, std::cout, std::cerr); }
