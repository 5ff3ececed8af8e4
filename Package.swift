// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Dermis",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "dermis", targets: ["dermis"]),
        .executable(name: "dermis-bench", targets: ["DermisBench"]),
        .executable(name: "dermis-hello", targets: ["DermisHello"]),
        .library(name: "DermisCore", targets: ["DermisCore"]),
        .library(name: "DermisApp", targets: ["DermisApp"]),
    ],
    dependencies: [
        .package(url: "https://github.com/vapor/vapor.git", from: "4.122.0"),
        .package(url: "https://github.com/vapor/fluent.git", from: "4.13.0"),
        .package(url: "https://github.com/vapor/fluent-sqlite-driver.git", from: "4.9.0"),
        .package(url: "https://github.com/vapor/fluent-postgres-driver.git", from: "2.14.0"),
        .package(url: "https://github.com/vapor/leaf.git", from: "4.5.0"),
        .package(url: "https://github.com/vapor/leaf-kit.git", from: "1.14.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.34.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.65.0"),
    ],
    targets: [
        // Pure domain: the protocol as data and the clinical engine. Foundation only.
        .target(
            name: "DermisCore",
            resources: [.copy("Resources/protocol.json"), .copy("Resources/common-passwords.txt")]
        ),
        // Photo decoding and re-encoding on Debian's libjpeg-turbo and libpng (libjpeg62-turbo-dev, libpng-dev).
        .target(
            name: "CDermisImaging",
            linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16")]
        ),
        // The Vapor application: configure(), features, storage.
        .target(
            name: "DermisApp",
            dependencies: [
                "DermisCore",
                "CDermisImaging",
                .product(name: "Vapor", package: "vapor"),
                .product(name: "Fluent", package: "fluent"),
                .product(name: "FluentSQLiteDriver", package: "fluent-sqlite-driver"),
                .product(name: "FluentPostgresDriver", package: "fluent-postgres-driver"),
                .product(name: "Leaf", package: "leaf"),
                .product(name: "LeafKit", package: "leaf-kit"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            resources: [.copy("Resources")]
        ),
        // The `dermis` command: serve, migrate, screen, plan, demo.
        .executableTarget(
            name: "dermis",
            dependencies: [
                "DermisCore",
                "DermisApp",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // The availability benchmark: `swift run -c release dermis-bench`.
        .executableTarget(name: "DermisBench", dependencies: ["DermisCore"]),
        // The bare Vapor hello world scripts/bench measures Dermis against.
        .executableTarget(
            name: "DermisHello",
            dependencies: [
                .product(name: "Vapor", package: "vapor"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        .testTarget(name: "DermisCoreTests", dependencies: ["DermisCore"]),
        .testTarget(
            name: "DermisAppTests",
            dependencies: [
                "DermisApp",
                .product(name: "VaporTesting", package: "vapor"),
                .product(name: "LeafKit", package: "leaf-kit"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
